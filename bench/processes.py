"""What the benchmarks share: a free loopback port, the environment of a server that keeps
to loopback, a database on either engine, the server process itself, signed-in clients, and
a seeded patient's consents and check-in."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is listening on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    """The caller's environment minus any IOP_ settings (but IOP_FANOUT, which a benchmark
    compares), for a loopback server on `port`."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("IOP_") or k == "IOP_FANOUT"
    }
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "IOP_HOST": "127.0.0.1",
            "IOP_PORT": str(port),
            "IOP_PUBLIC_URL": f"https://127.0.0.1:{port}",
            "IOP_DATA_DIR": str(data_dir),
            "IOP_LOG_LEVEL": "warning",
            "IOP_LOG_FORMAT": "json",
            "IOP_ICE_HOSTS": "127.0.0.1",  # media stays on loopback too
            # The demo group's next session may be days away: check in for it now.
            "IOP_CHECKIN_LOCATION_WINDOW_MINUTES": str(14 * 24 * 60),
        }
    )
    return env


async def consent_and_check_in(conn: Any, keyring: Any, patient_id: str, session_id: str) -> None:
    """A seeded patient's consents and a calm check-in for one session (fictional data)."""
    from crisis.questions import next_question
    from server.checkin import safety_checks as checkin_safety
    from server.checkin import store as checkin_store
    from server.consent import ledger as consent_ledger
    from server.consent import templates as consent_templates

    now = dt.datetime.now(dt.UTC)
    terms = await consent_templates.session_terms(conn, session_id)
    assert terms is not None
    for kind in terms.required:
        template = await consent_templates.latest(conn, kind)
        document = await consent_templates.document_for(conn, template, terms.values)
        await consent_ledger.append(
            conn,
            keyring,
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
            signature="Benchmark Patient",
            recorded_at=now,
        )
    await checkin_safety.save_safety_check(
        conn,
        keyring,
        session_id=session_id,
        patient_id=patient_id,
        answers={
            "address": "1 Example Street, Example Valley, CA 00000 (example)",
            "county": "Example County",
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
        answers[qid] = "no" if qid.startswith(("cssrs", "sud")) else "0"
    await checkin_store.save_screening(
        conn,
        keyring,
        session_id=session_id,
        patient_id=patient_id,
        plan=plan,
        answers=answers,
        now=now,
    )


GROUP_SIZE = 12  # patients per seeded group
WAIT_S = 30.0  # for an expected message on a socket

POSTGRES_ADMIN_URL = os.environ.get(
    "IOP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.asynccontextmanager
async def database(kind: str, data_dir: Path) -> AsyncIterator[str | None]:
    """The `DATABASE_URL` a benchmark server uses: None for SQLite in its data dir, or a
    fresh PostgreSQL database on 127.0.0.1 that is dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    import asyncpg

    name = f"iop_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass
class Launched:
    """A benchmark server process with the demo program, reachable over HTTPS."""

    demo: dict[str, Any]
    env: dict[str, str]
    base: str
    ssl: ssl.SSLContext
    process: asyncio.subprocess.Process | None = None


async def make_demo(data_dir: Path, port: int, database_url: str | None) -> Launched:
    """Migrate and seed the demo program (`python -m server demo --json`) for a server."""
    env = server_env(data_dir, port)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    made = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "demo", "--json",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await made.communicate()
    if made.returncode != 0:
        raise RuntimeError(f"`server demo` failed with {made.returncode}")
    return Launched(json.loads(out), env, f"https://127.0.0.1:{port}", ssl.create_default_context())


async def serve(launched: Launched, data_dir: Path) -> None:
    """Start `python -m server serve` and wait until /healthz answers."""
    launched.process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve",
        env=launched.env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    ca = data_dir / "certs" / "ca.crt"
    for _ in range(300):
        if ca.exists():
            break
        await asyncio.sleep(0.1)
    launched.ssl = ssl.create_default_context(cafile=str(ca))
    for _ in range(300):
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=launched.ssl)) as c,
                c.get(launched.base + "/healthz") as response,
            ):
                if response.status == 200:
                    return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not answer /healthz within 30 s")


async def stop(launched: Launched) -> None:
    """SIGTERM the server and wait for it."""
    if launched.process is not None and launched.process.returncode is None:
        launched.process.send_signal(signal.SIGTERM)
        await launched.process.wait()


def client(launched: Launched) -> aiohttp.ClientSession:
    """An HTTPS client with its own cookies that sends Origin as a browser on our pages."""
    return aiohttp.ClientSession(
        base_url=launched.base,
        connector=aiohttp.TCPConnector(ssl=launched.ssl),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Origin": launched.base},  # sockets check it
    )


async def sign_in(launched: Launched, member: dict[str, Any]) -> aiohttp.ClientSession:
    """A staff client signed in with password and TOTP."""
    http = client(launched)
    totp = pyotp.TOTP(member["totp_secret"])
    for code in (totp.now(), totp.at(time.time() + 30)):
        signed = await http.post(
            "/api/auth/session",
            json={"email": member["email"], "password": member["password"], "code": code},
        )
        if signed.status == 200:
            return http
    await http.close()
    raise RuntimeError(f"sign-in failed: {signed.status}")


async def seed_rooms(
    env: dict[str, str], demo: dict[str, Any], rooms: int, size: int = GROUP_SIZE
) -> list[dict[str, Any]]:
    """K groups of `size` fictional patients, ready to enter their next session's room."""
    from server.accounts import joinlinks
    from server.catalog import patients as catalog_patients
    from server.catalog import schedule as catalog_schedule
    from server.catalog.schemas import GroupIn, PatientIn, SlotIn
    from server.config import Settings
    from server.demo import DEMO_TIME_ZONE, WEEKLY
    from server.phi import ensure_keyring
    from server.storage.engine import create_engine

    settings = Settings.from_env(env)
    keyring, _ = ensure_keyring(settings.secret_key_file)
    engine = create_engine(settings.database_url)
    now = dt.datetime.now(dt.UTC)
    clinicians = [m["id"] for m in demo["staff"] if m["role"] == "clinician"]
    out = []
    try:
        for number in range(rooms):
            async with engine.begin() as conn:
                patients = []
                for seat in range(size):
                    patient = await catalog_patients.create_patient(
                        conn,
                        keyring,
                        PatientIn(
                            program_id=demo["program"]["id"],
                            legal_name=f"Bench R{number} P{seat} Example",
                            display_name=f"R{number}P{seat}",
                            date_of_birth=dt.date(1990, 1, 1),
                            home_address="1 Example Street, Example Valley, CA 00000 (example)",
                            backup_phone="(555) 010-0150",
                            time_zone=DEMO_TIME_ZONE,
                        ),
                        now,
                    )
                    patients.append(patient["id"])
                group = await catalog_schedule.create_group(
                    conn,
                    GroupIn(
                        program_id=demo["program"]["id"],
                        name=f"Benchmark group {number}",
                        lead_clinician_id=clinicians[0],
                        cofacilitator_id=clinicians[1],
                        member_ids=patients,
                        time_zone=DEMO_TIME_ZONE,
                        schedule=[SlotIn(day=day, start="18:00", end="21:00") for day in WEEKLY],
                        template="evening-group-180",
                        starts_on=now.date(),
                    ),
                    now,
                    settings.schedule_horizon_days,
                )
                links = []
                session_id = ""
                for patient_id in patients:
                    slots = await joinlinks.patient_sessions(conn, patient_id, now)
                    session_id = slots[0].session_id
                    link = await joinlinks.issue(
                        conn,
                        patient_id=patient_id,
                        session_id=session_id,
                        issued_by=clinicians[0],
                        now=now,
                        grace=dt.timedelta(minutes=60),
                        standing_for=dt.timedelta(days=30),
                    )
                    links.append(f"{settings.public_url}/j/{link.token}")
                    await consent_and_check_in(conn, keyring, patient_id, session_id)
            out.append({"group_id": group["id"], "session_id": session_id, "links": links})
    finally:
        await engine.dispose()
    return out


class Socket:
    """One WebSocket and a task that reads everything it is sent."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.me = ""
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.on_message: Any = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if self.on_message is not None:
                self.on_message(message)
            else:
                self.inbox.put_nowait(message)

    async def until(self, match: Any) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await self.inbox.get()
                if match(message):
                    return message

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def room_socket(http: aiohttp.ClientSession, session_id: str) -> Socket:
    ws = await http.ws_connect(f"/ws/rooms/{session_id}", heartbeat=None)
    sock = Socket(http, ws)
    await ws.send_json({"type": "hello", "protocol": 1})
    first = await sock.until(lambda m: m["type"] in ("snapshot", "error"))
    if first["type"] == "error":
        raise RuntimeError(f"room refused: {first['code']}")
    sock.me = first["you"]["id"]
    return sock
