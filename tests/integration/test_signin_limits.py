"""Sign-in rate limits: the real client behind a proxy, a delay per account, bursts."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from server.appkeys import CLOCK, ENGINE
from server.consent import ledger as consent_ledger
from server.storage.tables import audit_log
from tests.conftest import CSRF, RunningServer, signed_in, staff_login, start_server

PROXY = {"IOP_TRUSTED_PROXIES": "127.0.0.1/32, ::1"}


@pytest.fixture
async def proxied(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningServer]:
    """A real server that trusts a reverse proxy on loopback, as behind the shipped nginx."""
    running = await start_server(tmp_path / "data", sqlite_url, PROXY)
    try:
        yield running
    finally:
        await running.runner.cleanup()


def _from(address: str) -> dict[str, str]:
    # What nginx's $proxy_add_x_forwarded_for sends: whatever the client claimed, then
    # the address nginx saw.
    return {"X-Forwarded-For": f"10.9.9.9, {address}"}


async def _password_step(
    client: aiohttp.ClientSession, email: str, password: str, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    async with client.get("/signin") as page:
        token = CSRF.search(await page.text())
    assert token is not None
    form = {"csrf_token": token.group(1), "email": email, "password": password}
    response = await client.post("/signin", data=form, headers=headers, allow_redirects=False)
    await response.read()
    return response


async def test_behind_a_trusted_proxy_one_clients_failures_do_not_lock_out_the_clinic(
    proxied: RunningServer,
) -> None:
    demo = await proxied.seed_demo()
    email, password, secret = staff_login(demo, "clinician")
    async with await signed_in(proxied, email, password, secret) as at_desk:
        attacker = _from("203.0.113.7")
        async with proxied.client() as client:
            for n in range(20):
                wrong = await _password_step(client, f"guess{n}@example.org", "x", attacker)
                assert wrong.status == 400
            refused = await _password_step(client, email, password, attacker)
            assert refused.status == 429
            # The same client cannot get round it by adding its own X-Forwarded-For.
            spoofed = {"X-Forwarded-For": f"198.51.100.99, {attacker['X-Forwarded-For']}"}
            assert (await _password_step(client, "x@example.org", "x", spoofed)).status == 429
        clinic = _from("198.51.100.4")
        async with proxied.client() as client:
            first = await _password_step(client, email, password, clinic)
            assert first.status == 303
            assert first.headers["Location"] == "/signin/code"
        # Idle unlock at the clinic works too.
        proxied.app[CLOCK].advance(minutes=16)
        async with at_desk.get("/unlock") as page:
            token = CSRF.search(await page.text())
        assert token is not None
        unlocked = await at_desk.post(
            "/unlock",
            data={"csrf_token": token.group(1), "password": password, "next": "/dashboard"},
            headers=clinic,
            allow_redirects=False,
        )
        assert unlocked.status == 303


async def test_an_attacker_who_knows_an_email_only_delays_its_owner(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, password, _ = staff_login(demo, "admin")
    async with server.client() as client:
        for _ in range(5):
            assert (await _password_step(client, email, "wrong password")).status == 400
        waiting = await _password_step(client, email, password)
        assert waiting.status == 429
        assert waiting.headers["Retry-After"] == "5"
        server.app[CLOCK].advance(seconds=5)
        # Each further failure doubles the wait.
        assert (await _password_step(client, email, "wrong again")).status == 400
        longer = await _password_step(client, email, password)
        assert longer.status == 429
        assert longer.headers["Retry-After"] == "10"
        # Waiting is not a failure: asking again does not lengthen the wait.
        assert (await _password_step(client, email, password)).headers["Retry-After"] == "10"
        server.app[CLOCK].advance(seconds=10)
        owner = await _password_step(client, email, password)
        assert owner.status == 303
        assert owner.headers["Location"] == "/signin/code"


async def test_a_parallel_burst_reaches_the_password_check_only_a_few_times(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    email, _, _ = staff_login(demo, "supervisor")
    async with server.client() as client:

        async def guess(n: int) -> int:
            body = {"email": email, "password": f"guess number {n}"}
            async with client.post("/api/auth/session", json=body) as response:
                return response.status

        statuses = await asyncio.gather(*(guess(n) for n in range(30)))
    assert statuses.count(401) <= 5, statuses
    assert statuses.count(429) == 30 - statuses.count(401), statuses
    async with server.app[ENGINE].connect() as conn:
        checked = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == "auth.password", audit_log.c.outcome == "failed")
        )
    assert checked == statuses.count(401)


async def test_consent_evidence_records_the_client_behind_the_proxy(
    proxied: RunningServer,
) -> None:
    demo = await proxied.seed_demo()
    patient = demo["groups"][0]["patients"][0]
    async with proxied.client() as phone:
        assert (await phone.get(patient["join_url"])).status == 200
        page = await (await phone.get("/consent")).text()
        kind = re.search(r'action="/consent/([a-z_0-9]+)"', page)
        token = CSRF.search(page)
        assert kind is not None and token is not None
        form = {"csrf_token": token.group(1), "full_name": "Avery Example", "decision": "agree"}
        form |= {f"ack_{i}": "on" for i in range(len(re.findall(r'name="ack_\d+"', page)))}
        agreed = await phone.post(
            f"/consent/{kind.group(1)}",
            data=form,
            headers=_from("203.0.113.50"),
            allow_redirects=False,
        )
        assert agreed.status == 303, await agreed.text()
    async with proxied.app[ENGINE].connect() as conn:
        exported = await consent_ledger.export(conn, proxied.keyring, patient["id"])
    (event,) = exported["events"]
    assert json.loads(event["context"])["address"] == "203.0.113.50"
