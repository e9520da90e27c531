"""Two server processes sharing PostgreSQL fire each crisis deadline exactly once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa

from server.storage.engine import create_engine
from server.storage.tables import crisis_steps, crisis_timers, notification_outbox
from tests.conftest import _create_postgres_database, _drop_postgres_database, free_port
from tests.integration.test_crisis import until
from tests.integration.test_process import ServerProcess, _env, _run, _start

POLL = "0.05"
# A ladder of seconds instead of minutes, so real processes reach every rung quickly.
FAST_POLICY = {
    "high": {
        "escalations": [
            {"after_s": 1, "page": ["primary"]},
            {"after_s": 2, "page": ["primary", "backup"]},
            {"after_s": 3, "page": ["medical_director"]},
        ]
    }
}


async def _sign_in(running: ServerProcess, member: dict[str, Any]) -> Any:
    client = running.client()
    response = await client.post(
        "/api/auth/session",
        json={
            "email": member["email"],
            "password": member["password"],
            "code": pyotp.TOTP(member["totp_secret"]).now(),
        },
    )
    assert response.status == 200, await response.text()
    return client


async def _counts(url: str) -> dict[str, Any]:
    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            kinds = (await conn.execute(sa.select(crisis_steps.c.kind))).scalars().all()
            timers = (await conn.execute(sa.select(crisis_timers))).all()
            outbox = (await conn.execute(sa.select(notification_outbox))).all()
    finally:
        await engine.dispose()
    return {
        "deadline_missed": kinds.count("deadline_missed"),
        "notified": kinds.count("notified"),
        "fired": sorted(t.purpose for t in timers if t.fired_at is not None),
        "claimed_by": {t.claimed_by for t in timers if t.claimed_by},
        "outbox": sorted((row.kind, row.attempts, row.status) for row in outbox),
    }


async def test_two_servers_sharing_postgresql_fire_each_deadline_exactly_once(
    tmp_path: Path, postgres_unavailable: str | None
) -> None:
    if postgres_unavailable:
        pytest.skip(postgres_unavailable)
    name, url = await _create_postgres_database()
    data_dir = tmp_path / "data"
    ports = (free_port(), free_port())
    servers: list[ServerProcess] = []
    try:
        demo_run = await asyncio.to_thread(
            _run, ["demo", "--json"], _env(data_dir, ports[0], DATABASE_URL=url)
        )
        assert demo_run.returncode == 0, demo_run.stderr
        demo = json.loads(demo_run.stdout)
        for port in ports:
            servers.append(
                await _start(data_dir, port, DATABASE_URL=url, IOP_TIMER_POLL_SECONDS=POLL)
            )
        staff = {member["role"]: member for member in demo["staff"]}
        async with await _sign_in(servers[0], staff["admin"]) as admin:
            set_policy = await admin.put(
                f"/api/crisis/settings/{demo['program']['id']}", json={"policy": FAST_POLICY}
            )
            assert set_policy.status == 200, await set_policy.text()
        patient = demo["groups"][0]["patients"][0]
        async with await _sign_in(servers[1], staff["clinician"]) as clinician:
            flagged = await clinician.post(
                "/api/crisis/events",
                json={
                    "patient_id": patient["id"],
                    "session_id": patient["join_session_id"],
                    "level": "high",
                },
            )
            assert flagged.status == 201, await flagged.text()

        async def all_missed() -> bool:
            return bool((await _counts(url))["deadline_missed"] >= 3)

        await until(all_missed, within=30)
        await asyncio.sleep(1.0)  # both processes keep polling: nothing more may fire
        counts = await _counts(url)
        assert counts["deadline_missed"] == 3
        # 3 paged at the raise, then primary; primary and backup; the medical director.
        assert counts["notified"] == 3 + 1 + 2 + 1
        assert counts["fired"] == ["ack-high-1", "ack-high-2", "ack-high-3"]
        # Each notification claimed once (no webhook is configured, so none is retried).
        assert counts["outbox"] == sorted(
            [("raised", 1, "no_webhook")] + [("escalation", 1, "no_webhook")] * 3
        )
    finally:
        outputs = []
        for running in servers:
            code, output = await running.stop()
            outputs.append(output)
            assert code == 0, output
        await _drop_postgres_database(name)
    assert all("crisis.timers_failed" not in output for output in outputs)
