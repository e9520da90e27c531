"""Fixtures that build real things: servers on loopback, fresh databases, a real browser."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest
from aiohttp import web

from certs import ensure_development_certificates
from crisis.questions import next_question
from rooms.media import fanout
from server.accounts import store as accounts
from server.app import create_app, tls_context
from server.appkeys import CLOCK, CRISIS_STREAM, ENGINE
from server.checkin import safety_checks as checkin_safety
from server.checkin import store as checkin_store
from server.config import Settings
from server.consent import ledger as consent_ledger
from server.consent import templates as consent_templates
from server.crisis import publish as crisis_publish
from server.demo import seed_demo
from server.phi import Keyring, ensure_keyring

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "IOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
CHROMIUM = "/usr/bin/chromium"
# The per-session form token every HTML form carries.
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# The demo's group meets at 18:00 on four weekdays, so its next session may be days away
# when a test runs: test servers open the check-in's location step two weeks ahead, and
# the tests of that window start a server with the real default.
TEST_ENV = {"IOP_CHECKIN_LOCATION_WINDOW_MINUTES": str(14 * 24 * 60)}
# `IOP_FANOUT=python make test` (or c) runs the media tests with that fan-out: test
# servers are given it, and rooms built directly use it from the start.
if os.environ.get("IOP_FANOUT"):
    TEST_ENV["IOP_FANOUT"] = os.environ["IOP_FANOUT"]
    fanout.select(os.environ["IOP_FANOUT"])
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Databases -------------------------------------------------------------------------------


async def _postgres_reason() -> str | None:
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(POSTGRES_ADMIN_URL), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({type(exc).__name__})"
    await conn.close()
    return None


@pytest.fixture(scope="session")
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    return asyncio.run(_postgres_reason())


async def _create_postgres_database() -> tuple[str, str]:
    import asyncpg

    name = f"iop_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop_postgres_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> AsyncIterator[str]:
    """A fresh, empty database on each engine; PostgreSQL is skipped only when absent."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
        return
    if postgres_unavailable:
        print(f"skipping PostgreSQL: {postgres_unavailable}", file=sys.stderr)
        pytest.skip(postgres_unavailable)
    name, url = await _create_postgres_database()
    try:
        yield url.replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        await _drop_postgres_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"


# Servers ---------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A server started in this process, with what a test needs to reach it."""

    settings: Settings
    keyring: Keyring
    app: web.Application
    runner: web.AppRunner
    ca_file: Path
    base_url: str
    extras: dict[str, Any] = field(default_factory=dict)

    def client_ssl(self) -> ssl.SSLContext:
        """A client TLS context that trusts only the development CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self) -> aiohttp.ClientSession:
        """An HTTP client that verifies the server against the dev CA and keeps cookies.

        Like a browser on the server's own pages, it says so in `Origin` (WebSocket
        upgrades without it are refused).
        """
        return aiohttp.ClientSession(
            base_url=self.base_url,
            connector=aiohttp.TCPConnector(ssl=self.client_ssl()),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Origin": self.base_url},
        )

    async def seed_demo(self) -> dict[str, Any]:
        """Create the demo program in this server's database."""
        return await seed_demo(
            self.app[ENGINE],
            self.keyring,
            self.base_url,
            self.app[CLOCK].now(),
            self.settings.schedule_horizon_days,
        )


def make_settings(
    data_dir: Path, database_url: str, port: int, extra: dict[str, str] | None = None
) -> Settings:
    """Settings for a test server on loopback."""
    return Settings.from_env(
        TEST_ENV
        | (extra or {})
        | {
            "IOP_HOST": "127.0.0.1",
            "IOP_PORT": str(port),
            "IOP_PUBLIC_URL": f"https://127.0.0.1:{port}",
            "IOP_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url,
            "IOP_ICE_HOSTS": "127.0.0.1",
            "IOP_LOG_FORMAT": "json",
        }
    )


async def start_server(
    data_dir: Path, database_url: str, extra_env: dict[str, str] | None = None
) -> RunningServer:
    """Start the real application over TLS on a free loopback port."""
    port = free_port()
    settings = make_settings(data_dir, database_url, port, extra_env)
    keyring, _ = ensure_keyring(settings.secret_key_file)
    ca = ensure_development_certificates(settings.certs_dir).ca_cert
    app = create_app(settings, keyring)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(settings))
    await site.start()
    return RunningServer(settings, keyring, app, runner, ca, f"https://127.0.0.1:{port}")


@pytest.fixture
async def server(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningServer]:
    """A real server on SQLite."""
    running = await start_server(tmp_path / "data", sqlite_url)
    try:
        yield running
    finally:
        await running.runner.cleanup()


@pytest.fixture
async def any_server(tmp_path: Path, database_url: str) -> AsyncIterator[RunningServer]:
    """A real server, once on SQLite and once on PostgreSQL."""
    running = await start_server(tmp_path / "data", database_url)
    try:
        yield running
    finally:
        await running.runner.cleanup()


@pytest.fixture
async def demo(server: RunningServer) -> dict[str, Any]:
    """The demo program seeded into the SQLite server."""
    return await server.seed_demo()


_USED_STEPS: dict[str, int] = {}


def totp_code(running: RunningServer | None, secret: str) -> str:
    """A code the server accepts now that no earlier sign-in of this test used.

    `running` is a server in this process (its clock may be moved), or None for servers
    running as processes on the real clock.
    """
    totp = pyotp.TOTP(secret)
    now = running.app[CLOCK].now().timestamp() if running is not None else time.time()
    current = int(now) // totp.interval
    # The current step, or the next one when it was used: the server accepts one step of
    # drift either way, so a 30 s boundary passing before the request lands is harmless.
    step = max(current, _USED_STEPS.get(secret, current - 1) + 1)
    if step > current + 1:
        raise AssertionError("more than two sign-ins of one account in 30 s")
    _USED_STEPS[secret] = step
    return totp.at(step * totp.interval)


async def signed_in(
    running: RunningServer, email: str, password: str, totp_secret: str | None = None
) -> aiohttp.ClientSession:
    """A client signed in as one staff member (with a TOTP code when a secret is given)."""
    client = running.client()
    body = {"email": email, "password": password}
    if totp_secret is not None:
        body["code"] = totp_code(running, totp_secret)
    response = await client.post("/api/auth/session", json=body)
    assert response.status == 200, await response.text()
    return client


async def enrol_totp(running: RunningServer, staff_id: str) -> str:
    """Set up the second factor for an account directly in storage; return its secret."""
    secret = pyotp.random_base32()
    now = running.app[CLOCK].now()
    async with running.app[ENGINE].begin() as conn:
        await accounts.enrol_totp(
            conn, running.keyring, staff_id, secret, int(now.timestamp()) // 30 - 2, now
        )
    return secret


async def give_consents(running: RunningServer, patient_id: str, session_id: str) -> None:
    """Record the patient's e-signed consent to every document the session requires."""
    now = running.app[CLOCK].now()
    async with running.app[ENGINE].begin() as conn:
        terms = await consent_templates.session_terms(conn, session_id)
        assert terms is not None
        for kind in terms.required:
            template = await consent_templates.latest(conn, kind)
            document = await consent_templates.document_for(conn, template, terms.values)
            await consent_ledger.append(
                conn,
                running.keyring,
                patient_id=patient_id,
                kind=kind,
                event="consented",
                template_id=template.id,
                template_version=template.version,
                text_sha256=document.sha256(),
                language="en",
                session_id=session_id,
                presented_at=now,
                consented_at=now,
                method="e_signature",
                signer_role="patient",
                signature="Test Signature",
                recorded_at=now,
            )


async def flag_first_patient(client: aiohttp.ClientSession, demo: dict[str, Any]) -> str:
    """A clinician flags the demo's first group patient (high level); the event's id."""
    patient = demo["groups"][0]["patients"][0]
    response = await client.post(
        "/api/crisis/events",
        json={
            "patient_id": patient["id"],
            "session_id": patient["join_session_id"],
            "level": "high",
            "note": "flagged",
        },
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["event_id"])


# PHQ-9 item 9 above 0 opens the C-SSRS; yes to Q4 (intent) makes the screen high risk.
HIGH_RISK = {"phq9_9": "1", "cssrs_q1": "yes", "cssrs_q2": "yes", "cssrs_q4": "yes"}


async def give_checkin(
    running: RunningServer, patient_id: str, session_id: str, *, high_risk: bool = False
) -> None:
    """Record a check-in: a private safety check and answers to what is due.

    All-clear answers by default; `high_risk` answers a high C-SSRS screen, which raises a
    crisis event and tells the running dashboards at once, as the check-in page does.
    """
    now = running.app[CLOCK].now()
    # A stand-in app for a cluster of processes has no dashboards of its own to tell.
    if CRISIS_STREAM in running.app:
        writing = crisis_publish.transaction(running.app)
    else:
        writing = running.app[ENGINE].begin()
    async with writing as conn:
        await checkin_safety.save_safety_check(
            conn,
            running.keyring,
            session_id=session_id,
            patient_id=patient_id,
            answers={
                "address": "1 Example Street, Fresno, CA 93701",
                "county": "Fresno",
                "callback_phone": "(555) 010-0150",
                "support_reachable": "yes",
                "private_space": True,
                "same_as_last_time": False,
            },
            now=now,
            recorded_by=None,
        )
        plan = await checkin_store.plan_for(conn, session_id, patient_id, now)
        answers: dict[str, str] = {}
        while (qid := next_question(plan, answers)) is not None:
            calm = "no" if qid.startswith(("cssrs", "sud")) else "0"
            answers[qid] = HIGH_RISK.get(qid, calm) if high_risk else calm
        scored, _ = await checkin_store.save_screening(
            conn,
            running.keyring,
            session_id=session_id,
            patient_id=patient_id,
            plan=plan,
            answers=answers,
            now=now,
        )
        assert not high_risk or scored["level"] == "high", scored["level"]


async def consent_group(running: RunningServer, demo: dict[str, Any]) -> None:
    """Every demo group patient consents and checks in for their next session."""
    for patient in demo["groups"][0]["patients"]:
        await give_consents(running, patient["id"], patient["join_session_id"])
        await give_checkin(running, patient["id"], patient["join_session_id"])


def staff_login(demo: dict[str, Any], role: str, index: int = 0) -> tuple[str, str, str]:
    """(email, password, totp_secret) of the index-th demo staff member with `role`."""
    members = [m for m in demo["staff"] if m["role"] == role]
    return members[index]["email"], members[index]["password"], members[index]["totp_secret"]


# Browser ---------------------------------------------------------------------------------


@pytest.fixture
def chromium_path() -> Iterator[str]:
    """Debian's Chromium; `make test` installs it when missing."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    yield CHROMIUM


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Any]:
    """Headless Chromium with a fake camera and microphone."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh page whose console errors and page errors are collected on `page.errors`."""
    context = await browser.new_context(ignore_https_errors=True)
    new_page = await context.new_page()
    errors: list[str] = []
    new_page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    new_page.on("pageerror", lambda exc: errors.append(str(exc)))
    new_page.errors = errors
    try:
        yield new_page
    finally:
        await context.close()


async def browser_window(browser: Any, errors: list[str], *, phone: bool = False) -> Any:
    """A new Chromium context and page that collects console and page errors."""
    options: dict[str, Any] = {"ignore_https_errors": True}
    if phone:
        options["viewport"] = {"width": 375, "height": 740}
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def browser_sign_in(
    page: Any, running: RunningServer | str, demo: dict[str, Any], role: str = "clinician"
) -> None:
    """Sign a demo staff member in through the pages, password then TOTP.

    `running` is a server in this process, or the base URL of servers run as processes.
    """
    email, password, secret = staff_login(demo, role)
    base_url = running if isinstance(running, str) else running.base_url
    await page.goto(base_url + "/signin")
    await page.get_by_label("Work e-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("Verification code").fill(
        totp_code(None if isinstance(running, str) else running, secret)
    )
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/dashboard")


async def admit_waiting(page: Any, count: int) -> None:
    """On a host's room page: wait until `count` people are waiting, then admit them all.

    Pressing the button earlier would admit only those whose sockets had joined so far.
    """
    from playwright.async_api import expect

    await expect(page.locator("#waiting > li")).to_have_count(count, timeout=20000)
    await page.get_by_role("button", name="Admit everyone waiting").click()
