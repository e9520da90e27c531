"""The crisis path on a real server: events, deadlines, acknowledgement, timeline, webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from crisis.notify import SIGNATURE_HEADER, signature_matches
from server import audit
from server.appkeys import CLOCK, CRISIS_STREAM, ENGINE
from server.crisis import timeline as crisis_timeline
from server.crisis.workers import DELIVERY_LEASE
from server.storage.tables import crisis_events, crisis_steps, crisis_timers, notification_outbox
from tests.conftest import (
    ROOT,
    RunningServer,
    enrol_totp,
    free_port,
    signed_in,
    staff_login,
    start_server,
)

T = TypeVar("T")
FAST = {"IOP_TIMER_POLL_SECONDS": "0.05", "IOP_WEBHOOK_RETRY_BASE_SECONDS": "4"}
SECRET = "a webhook secret of some length"


async def until(check: Callable[[], Awaitable[T]], within: float = 10.0) -> T:
    """Poll `check` until it returns something truthy (the background loops run every 50 ms)."""
    async with asyncio.timeout(within):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


@pytest.fixture
async def crisis_server(tmp_path: Path, database_url: str) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path / "data", database_url, FAST)
    try:
        yield running
    finally:
        await running.runner.cleanup()


@pytest.fixture
async def seeded(crisis_server: RunningServer) -> dict[str, Any]:
    return await crisis_server.seed_demo()


def _target(demo: dict[str, Any], index: int = 0) -> dict[str, str]:
    patient = demo["groups"][0]["patients"][index]
    return {"patient_id": patient["id"], "session_id": patient["join_session_id"]}


async def _flag(
    client: aiohttp.ClientSession, demo: dict[str, Any], level: str, index: int = 0
) -> str:
    response = await client.post(
        "/api/crisis/events", json={**_target(demo, index), "level": level, "note": "flag note"}
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["outcome"] == "event"
    return str(body["event_id"])


async def _kinds(server: RunningServer, event_id: str) -> list[str]:
    async with server.app[ENGINE].connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(crisis_steps.c.kind)
                    .where(crisis_steps.c.event_id == event_id)
                    .order_by(crisis_steps.c.step_no)
                )
            ).scalars()
        )


async def _timeline(server: RunningServer, event_id: str) -> list[dict[str, Any]]:
    async with server.app[ENGINE].connect() as conn:
        return await crisis_timeline.timeline(conn, server.keyring, event_id)


def _staff_id(demo: dict[str, Any], email_prefix: str) -> str:
    return next(m["id"] for m in demo["staff"] if m["email"].startswith(email_prefix))


async def test_a_clinician_flag_opens_one_event_and_a_second_concern_joins_it(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    demo = seeded
    async with await signed_in(crisis_server, *staff_login(demo, "clinician")) as clinician:
        first = await _flag(clinician, demo, "moderate")
        second = await _flag(clinician, demo, "high")
        other = await _flag(clinician, demo, "high", index=1)
    assert second == first and other != first
    async with crisis_server.app[ENGINE].connect() as conn:
        rows = (await conn.execute(sa.select(crisis_events))).all()
    assert sorted((r.patient_id, r.level, r.state) for r in rows) == sorted(
        [
            (_target(demo)["patient_id"], "high", "open"),
            (_target(demo, 1)["patient_id"], "high", "open"),
        ]
    )
    steps = await _timeline(crisis_server, first)
    assert [s["kind"] for s in steps] == [
        "raised",
        *["notified"] * 3,
        "concern_added",
        "level_raised",
        *["notified"] * 3,
    ]
    assert steps[0]["actor_type"] == "staff" and steps[0]["data"]["trigger"] == "clinician_flag"
    paged = {(s["data"]["role"], s["data"]["staff_id"]) for s in steps[1:4]}
    assert paged == {
        ("facilitator", _staff_id(demo, "clinician1")),
        ("cofacilitator", _staff_id(demo, "clinician2")),
        ("primary", _staff_id(demo, "supervisor")),
    }
    # The moderate ladder was replaced by the high one, armed from the second concern.
    async with crisis_server.app[ENGINE].connect() as conn:
        timers = (
            await conn.execute(sa.select(crisis_timers).where(crisis_timers.c.event_id == first))
        ).all()
    live = sorted(t.purpose for t in timers if t.cancelled_at is None)
    assert live == ["ack-high-1", "ack-high-2", "ack-high-3"]
    assert [t.purpose for t in timers if t.cancelled_at is not None] == ["ack-moderate-1"]


async def test_an_unacknowledged_high_event_escalates_in_order_each_rung_once(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    demo, clock = seeded, crisis_server.app[CLOCK]
    async with await signed_in(crisis_server, *staff_login(demo, "clinician")) as clinician:
        event_id = await _flag(clinician, demo, "high")

    async def missed(count: int) -> list[dict[str, Any]]:
        steps = await _timeline(crisis_server, event_id)
        found = [s for s in steps if s["kind"] == "deadline_missed"]
        return steps if len(found) >= count else []

    clock.advance(seconds=30)
    await asyncio.sleep(0.3)
    assert "deadline_missed" not in await _kinds(crisis_server, event_id)
    clock.advance(seconds=31)  # 61 s: the 60 s acknowledgement deadline has passed
    steps = await until(lambda: missed(1))
    clock.advance(seconds=60)  # 2 min: primary again, and the backup
    steps = await until(lambda: missed(2))
    clock.advance(seconds=180)  # 5 min: the medical director
    steps = await until(lambda: missed(3))
    clock.advance(minutes=30)
    await asyncio.sleep(0.3)
    steps = await _timeline(crisis_server, event_id)
    after_raise = [s for s in steps[4:] if s["kind"] in ("deadline_missed", "notified")]
    described = [
        (s["kind"], s["data"].get("purpose") or s["data"]["role"], s["data"].get("reason"))
        for s in after_raise
    ]
    assert described == [
        ("deadline_missed", "ack-high-1", None),
        ("notified", "primary", "repage"),
        ("deadline_missed", "ack-high-2", None),
        ("notified", "primary", "escalation"),
        ("notified", "backup", "escalation"),
        ("deadline_missed", "ack-high-3", None),
        ("notified", "medical_director", "escalation"),
    ]
    first_miss = after_raise[0]["data"]
    assert first_miss["waiting_on"] == ["facilitator", "cofacilitator", "primary"]
    assert _staff_id(demo, "supervisor") in first_miss["staff_ids"]
    assert after_raise[5]["data"]["waiting_on"][-1] == "backup"
    async with await signed_in(crisis_server, *staff_login(demo, "supervisor")) as supervisor:
        report = await (await supervisor.get("/api/crisis/breaches")).json()
    assert [b["purpose"] for b in report["breaches"]] == ["ack-high-1", "ack-high-2", "ack-high-3"]
    assert all(b["event_id"] == event_id for b in report["breaches"])


async def test_acknowledging_stops_further_escalation(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    demo, clock = seeded, crisis_server.app[CLOCK]
    async with await signed_in(crisis_server, *staff_login(demo, "clinician")) as clinician:
        event_id = await _flag(clinician, demo, "high")
    clock.advance(seconds=61)
    await until(
        lambda: _has(crisis_server, event_id, "deadline_missed"),
    )
    async with await signed_in(crisis_server, *staff_login(demo, "supervisor")) as supervisor:
        acked = await supervisor.post(f"/api/crisis/events/{event_id}/ack", json={"note": "on it"})
        assert acked.status == 200, await acked.text()
        assert (await acked.json())["event"]["acknowledged_by"] == _staff_id(demo, "supervisor")
        again = await supervisor.post(f"/api/crisis/events/{event_id}/ack", json={})
        assert again.status == 409
    clock.advance(minutes=20)
    await asyncio.sleep(0.4)
    kinds = await _kinds(crisis_server, event_id)
    assert kinds.count("deadline_missed") == 1 and kinds[-1] == "acknowledged"
    async with crisis_server.app[ENGINE].connect() as conn:
        pending = (
            await conn.execute(
                sa.select(crisis_timers.c.purpose).where(
                    crisis_timers.c.event_id == event_id, crisis_timers.c.cancelled_at.is_(None)
                )
            )
        ).scalars()
    assert list(pending) == ["ack-high-1"]  # the one that fired; the rest were cancelled


async def _has(server: RunningServer, event_id: str, kind: str) -> bool:
    return kind in await _kinds(server, event_id)


async def test_steps_are_validated_and_sign_off_needs_a_supervisor_and_a_disposition(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    demo = seeded
    async with await signed_in(crisis_server, *staff_login(demo, "clinician")) as clinician:
        event_id = await _flag(clinician, demo, "high")
        steps = f"/api/crisis/events/{event_id}/steps"
        bad = await clinician.post(
            steps, json={"kind": "call_logged", "fields": {"number": "call me", "agency": "PSAP"}}
        )
        assert bad.status == 422
        assert (await bad.json())["fields"][0]["field"] == "number"
        part2 = await clinician.post(
            steps,
            json={
                "kind": "part2_disclosure",
                "fields": {
                    "recipient": "ED nurse",
                    "facility": "General",
                    "disclosed_by": "Casey",
                    "disclosed_at": "2026-11-23T18:00:00+00:00",
                    "nature_of_emergency": "overdose",
                },
            },
        )
        assert part2.status == 422  # the demo program is a mental-health program
        call = await clinician.post(
            steps,
            json={
                "kind": "call_logged",
                "fields": {
                    "number": "(555) 010-0911",
                    "agency": "Sacramento County PSAP (example)",
                    "incident_number": "INC-42",
                    "started_at": "2026-11-23T18:00:00+00:00",
                    "ended_at": "2026-11-23T18:04:00+00:00",
                    "outcome": "units dispatched",
                },
            },
        )
        assert call.status == 201, await call.text()
        early = await clinician.post(f"/api/crisis/events/{event_id}/ack", json={})
        assert early.status == 200
        refused = await clinician.post(f"/api/crisis/events/{event_id}/signoff", json={})
        assert refused.status == 403
        follow = await clinician.post(steps, json={"kind": "follow_up_task", "fields": {}})
        assert follow.status == 201
    async with await signed_in(crisis_server, *staff_login(demo, "supervisor")) as supervisor:
        no_disposition = await supervisor.post(f"/api/crisis/events/{event_id}/signoff", json={})
        assert no_disposition.status == 409
        disposition = await supervisor.post(
            steps,
            json={
                "kind": "disposition",
                "fields": {"disposition": "emergency_services_dispatched"},
            },
        )
        assert disposition.status == 201
        signed = await supervisor.post(f"/api/crisis/events/{event_id}/signoff", json={})
        assert signed.status == 200
        assert (await signed.json())["event"]["state"] == "closed"
        late_call = await supervisor.post(
            steps, json={"kind": "disposition", "fields": {"disposition": "other"}}
        )
        assert late_call.status == 409
        amend = await supervisor.post(
            steps,
            json={
                "kind": "amendment",
                "fields": {"amends": 5, "reason": "typo", "correction": "INC-43"},
            },
        )
        assert amend.status == 201, await amend.text()
        record = await (await supervisor.get(f"/api/crisis/events/{event_id}")).json()
    kinds = [s["kind"] for s in record["timeline"]]
    assert kinds[-4:] == ["follow_up_task", "disposition", "signed_off", "amendment"]
    follow_up = next(s for s in record["timeline"] if s["kind"] == "follow_up_task")
    due = dt.datetime.fromisoformat(follow_up["data"]["due_at"])
    assert due - dt.datetime.fromisoformat(follow_up["at"]) == dt.timedelta(hours=24)
    call_step = next(s for s in record["timeline"] if s["kind"] == "call_logged")
    assert call_step["data"]["incident_number"] == "INC-42"
    assert call_step["actor_id"] == _staff_id(demo, "clinician1")


async def test_only_staff_on_the_event_read_its_timeline_and_each_read_is_audited(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    demo = seeded
    async with await signed_in(crisis_server, *staff_login(demo, "admin")) as admin:
        spare = await admin.post(
            "/api/staff",
            json={
                "program_id": demo["program"]["id"],
                "email": "outsider@demo.iop.example",
                "display_name": "Outsider",
                "role": "clinician",
                "password": "a long outsider password",
            },
        )
        spare_id = (await spare.json())["id"]
    secret = await enrol_totp(crisis_server, spare_id)
    async with await signed_in(crisis_server, *staff_login(demo, "clinician")) as clinician:
        event_id = await _flag(clinician, demo, "moderate")
        mine = await clinician.get(f"/api/crisis/events/{event_id}")
        assert mine.status == 200
        listed = await (await clinician.get("/api/crisis/events")).json()
        assert [e["id"] for e in listed["events"]] == [event_id]
    async with await signed_in(
        crisis_server, "outsider@demo.iop.example", "a long outsider password", secret
    ) as outsider:
        refused = await outsider.get(f"/api/crisis/events/{event_id}")
        assert refused.status == 403
        assert (await outsider.post(f"/api/crisis/events/{event_id}/ack", json={})).status == 403
        assert (await (await outsider.get("/api/crisis/events")).json())["events"] == []
    async with await signed_in(crisis_server, *staff_login(demo, "supervisor")) as supervisor:
        assert (await supervisor.get(f"/api/crisis/events/{event_id}")).status == 200
    async with crisis_server.app[ENGINE].connect() as conn:
        rows = await audit.rows_for(conn, "crisis_event", event_id)
    reads = [
        (r["action"], r["actor_id"], r["outcome"]) for r in rows if r["action"] != "crisis.flagged"
    ]
    assert reads == [
        ("crisis.timeline_read", _staff_id(demo, "clinician1"), "ok"),
        ("crisis.access_refused", spare_id, "denied"),
        ("crisis.access_refused", spare_id, "denied"),
        ("crisis.timeline_read", _staff_id(demo, "supervisor"), "ok"),
    ]


async def test_the_timeline_chain_verifies_and_a_tampered_step_is_found(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    demo = seeded
    async with await signed_in(crisis_server, *staff_login(demo, "clinician")) as clinician:
        event_id = await _flag(clinician, demo, "high")
        await clinician.post(f"/api/crisis/events/{event_id}/ack", json={})
    async with crisis_server.app[ENGINE].begin() as conn:
        result = await crisis_timeline.verify(conn, crisis_server.keyring)
        assert result.ok and result.rows == 5
        # Rewrite history: the acknowledgement is credited to someone else.
        await conn.execute(
            crisis_steps.update()
            .where(crisis_steps.c.seq == 5)
            .values(actor_id=_staff_id(demo, "supervisor"))
        )
        broken = await crisis_timeline.verify(conn, crisis_server.keyring)
    assert not broken.ok and (broken.broken_at, broken.column) == (5, "actor_id")
    assert broken.describe() == "crisis_steps row 5: column actor_id does not match"


async def test_crisis_verify_command_reports_an_intact_chain(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    async with await signed_in(crisis_server, *staff_login(seeded, "clinician")) as clinician:
        await _flag(clinician, seeded, "high")
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": crisis_server.settings.database_url,
        "IOP_DATA_DIR": str(crisis_server.settings.data_dir),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server", "crisis", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "crisis timelines intact: 4 steps" in done.stdout
    async with crisis_server.app[ENGINE].begin() as conn:
        await conn.execute(crisis_steps.update().where(crisis_steps.c.seq == 2).values(kind="x"))
    broken = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server", "crisis", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert broken.returncode == 1
    assert broken.stdout.splitlines() == [
        "crisis timelines broken: crisis_steps row 2: column kind does not match"
    ]


# Webhook -----------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on loopback that fails the first `failures` deliveries."""

    def __init__(self, failures: int = 0, port: int | None = None) -> None:
        self.failures = failures
        self.port = port or free_port()
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        if len(self.received) <= self.failures:
            return web.Response(status=500)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _configure_webhook(server: RunningServer, demo: dict[str, Any], url: str) -> None:
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        response = await admin.put(
            f"/api/crisis/settings/{demo['program']['id']}",
            json={"webhook_url": url, "webhook_secret": SECRET},
        )
        assert response.status == 200, await response.text()
        view = await response.json()
    assert view["webhook_configured"] is True and SECRET not in json.dumps(view)


async def _outbox(server: RunningServer) -> list[Any]:
    async with server.app[ENGINE].connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(notification_outbox).order_by(notification_outbox.c.created_at)
                )
            ).all()
        )


async def test_the_webhook_is_signed_carries_no_phi_and_is_retried_with_backoff(
    crisis_server: RunningServer, seeded: dict[str, Any]
) -> None:
    demo, clock = seeded, crisis_server.app[CLOCK]
    receiver = Receiver(failures=2)
    await receiver.start()
    subscription = crisis_server.app[CRISIS_STREAM].subscribe()
    try:
        await _configure_webhook(crisis_server, demo, receiver.url)
        async with await signed_in(crisis_server, *staff_login(demo, "clinician")) as clinician:
            event_id = await _flag(clinician, demo, "high")
        await until(lambda: _count(receiver, 1))
        (row,) = await until(lambda: _outbox_after_attempts(crisis_server, 1))
        assert row.status == "pending" and row.last_error == "HTTP 500"
        first_wait = row.next_attempt_at - clock.now()
        # Equal jitter on a 4 s base: the first retry waits 2-4 s.
        assert dt.timedelta(seconds=1.5) < first_wait <= dt.timedelta(seconds=4)
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 1  # nothing is resent before its time
        clock.advance(seconds=4)
        await until(lambda: _count(receiver, 2))
        (row,) = await until(lambda: _outbox_after_attempts(crisis_server, 2))
        assert (
            dt.timedelta(seconds=3.5) < row.next_attempt_at - clock.now() <= dt.timedelta(seconds=8)
        )
        clock.advance(seconds=8)
        await until(lambda: _count(receiver, 3))
        (row,) = await until(lambda: _outbox_status(crisis_server, "delivered"))
        assert row.attempts == 3
        notification = await asyncio.wait_for(subscription.next(), timeout=5)
    finally:
        subscription.close()
        await receiver.stop()
    bodies = {body for body, _headers in receiver.received}
    assert len(bodies) == 1  # the same notification each time
    body, headers = receiver.received[-1]
    assert signature_matches(body, SECRET.encode(), headers[SIGNATURE_HEADER])
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    sent = json.loads(body)
    assert sent == notification.to_json()
    assert sent["event_id"] == event_id and sent["kind"] == "raised" and sent["level"] == "high"
    assert sent["url"] == f"{crisis_server.settings.public_url}/crisis/events/{event_id}"
    assert set(sent) == {"id", "event_id", "program_id", "level", "kind", "roles", "at", "url"}
    text = body.decode()
    patient = demo["groups"][0]["patients"][0]
    for phi in (patient["display_name"], "Example", "010-01", "Sacramento", "flag note"):
        assert phi not in text
    assert patient["id"] not in text


async def _count(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


async def _outbox_after_attempts(server: RunningServer, attempts: int) -> list[Any]:
    rows = await _outbox(server)
    now = server.app[CLOCK].now()
    # A row being delivered right now is claimed until now + DELIVERY_LEASE: its outcome
    # (and the retry time) is not written yet, so it does not count as attempted.
    in_flight = now + DELIVERY_LEASE - dt.timedelta(seconds=1)
    done = all(r.attempts >= attempts and now < r.next_attempt_at < in_flight for r in rows)
    return rows if rows and done and all(r.last_error for r in rows) else []


async def _outbox_status(server: RunningServer, status: str) -> list[Any]:
    rows = await _outbox(server)
    return rows if rows and all(r.status == status for r in rows) else []


async def test_a_restart_rearms_deadlines_and_delivers_pending_notifications(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "data"
    first = await start_server(data, database_url, FAST)
    receiver = Receiver(port=free_port())  # not listening yet: deliveries fail
    try:
        demo = await first.seed_demo()
        await _configure_webhook(first, demo, receiver.url)
        async with await signed_in(first, *staff_login(demo, "clinician")) as clinician:
            event_id = await _flag(clinician, demo, "high")
        (row,) = await until(lambda: _outbox_after_attempts(first, 1))
        assert row.last_error == "ClientConnectorError"
    finally:
        await first.runner.cleanup()
    await receiver.start()
    second = await start_server(data, database_url, FAST)
    try:
        clock = second.app[CLOCK]
        clock.advance(seconds=10)  # past the retry time
        await until(lambda: _count(receiver, 1))
        assert json.loads(receiver.received[0][0])["event_id"] == event_id
        clock.advance(seconds=55)  # 65 s after the raise: the first deadline, re-armed
        await until(lambda: _has(second, event_id, "deadline_missed"))
        await until(lambda: _count(receiver, 2))
        kinds = [json.loads(body)["kind"] for body, _ in receiver.received]
        assert kinds == ["raised", "escalation"]
    finally:
        await second.runner.cleanup()
        await receiver.stop()
