"""The supervisor dashboard over real WebSockets: help presses, acknowledgements, scope."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from rooms.closecodes import CloseCode
from server.appkeys import ENGINE
from server.storage.tables import crisis_events, crisis_steps
from tests.conftest import (
    RunningServer,
    consent_group,
    enrol_totp,
    signed_in,
    staff_login,
    start_server,
)
from tests.integration.test_rooms_ws import Peer, Room

# The outbox poll is slowed to a minute: whatever reaches a dashboard sooner came by the
# direct path (published by the process that committed the change).
SLOW_POLL = {"IOP_TIMER_POLL_SECONDS": "60"}


@pytest.fixture
async def live(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Room]:
    running = await start_server(tmp_path / "data", sqlite_url, SLOW_POLL)
    opened: Room | None = None
    try:
        demo = await running.seed_demo()
        await consent_group(running, demo)
        opened = Room(running, demo)
        yield opened
    finally:
        if opened is not None:
            await opened.close()
        await running.runner.cleanup()


async def dashboard(
    server: RunningServer, client: aiohttp.ClientSession, room: Room | None = None
) -> Peer:
    """A dashboard socket that has said hello and got its snapshot."""
    ws = await client.ws_connect("/ws/dashboard")
    peer = Peer(client, ws)
    if room is not None:
        room.peers.append(peer)
    await peer.send({"type": "hello", "protocol": 1})
    await peer.until(lambda m: m["type"] == "snapshot")
    return peer


def _staff_id(demo: dict[str, Any], role: str) -> str:
    return str(next(m["id"] for m in demo["staff"] if m["role"] == role))


def _event(kind: str, event_id: str | None = None) -> Any:
    return lambda m: (
        m["type"] == "event"
        and m["kind"] == kind
        and (event_id is None or m["event"]["id"] == event_id)
    )


async def test_a_help_press_reaches_the_supervisors_dashboard_without_waiting_for_a_poll(
    live: Room,
) -> None:
    supervisor = await dashboard(
        live.server, await signed_in(live.server, *staff_login(live.demo, "supervisor")), live
    )
    host = await live.staff()
    patient = await live.admitted(host, 0)
    pressed = time.monotonic()
    await patient.send({"type": "help", "text": "please"})
    message = await supervisor.until(_event("raised"))
    elapsed = time.monotonic() - pressed
    event = message["event"]
    assert event["level"] == "high" and event["state"] == "open"
    assert event["session_id"] == live.room_id
    assert event["trigger"] == "help_button"
    assert event["patient_name"] == "Avery"
    assert event["next_deadline"] is not None
    assert elapsed < 5  # the outbox poll would take a minute
    async with live.server.app[ENGINE].connect() as conn:
        stored = await conn.scalar(
            sa.select(crisis_events.c.id).where(
                crisis_events.c.patient_id == patient.me.split(":", 1)[1]
            )
        )
    assert event["id"] == stored
    # The help text stays in the room: the dashboard carries no message, only the event.
    assert "please" not in str(message)


async def test_an_acknowledgement_from_one_dashboard_updates_every_dashboard(live: Room) -> None:
    demo = live.demo
    supervisor = await dashboard(
        live.server, await signed_in(live.server, *staff_login(demo, "supervisor")), live
    )
    admin = await dashboard(
        live.server, await signed_in(live.server, *staff_login(demo, "admin")), live
    )
    host = await live.staff()
    patient = await live.admitted(host, 0)
    await patient.send({"type": "help", "text": ""})
    event_id = (await supervisor.until(_event("raised")))["event"]["id"]
    await admin.until(_event("raised", event_id))

    await supervisor.send({"type": "ack", "event_id": event_id, "ref": "a1"})
    done = await supervisor.until(lambda m: m["type"] == "done" and m["ref"] == "a1")
    assert done["action"] == "ack"
    for peer in (supervisor, admin):
        acked = (await peer.until(_event("acknowledged", event_id)))["event"]
        assert acked["state"] == "acknowledged"
        assert acked["acknowledged_by"]["id"] == _staff_id(demo, "supervisor")
        assert acked["next_deadline"] is None

    # Taking over, reassigning, a note: each goes on the timeline under the actor's name.
    await admin.send({"type": "take_over", "event_id": event_id, "ref": "t1"})
    await admin.until(lambda m: m["type"] == "done" and m["ref"] == "t1")
    taken = (await supervisor.until(_event("assigned", event_id)))["event"]
    assert taken["assigned_to"]["id"] == _staff_id(demo, "admin")
    backup = next(o["staff_id"] for o in demo["oncall"] if o["role"] == "backup")
    assert backup in {p["id"] for p in taken["assignable"]}
    await supervisor.send(
        {"type": "reassign", "event_id": event_id, "staff_id": backup, "ref": "r1"}
    )
    await supervisor.until(lambda m: m["type"] == "done" and m["ref"] == "r1")
    handed = (
        await admin.until(
            lambda m: _event("assigned", event_id)(m) and m["event"]["assigned_to"]["id"] == backup
        )
    )["event"]
    assert handed["assigned_to"]["name"]
    await supervisor.send({"type": "note", "event_id": event_id, "text": "calling", "ref": "n1"})
    await supervisor.until(lambda m: m["type"] == "done" and m["ref"] == "n1")
    # Sign-off needs a disposition first; the refusal says so and the socket stays.
    await supervisor.send({"type": "sign_off", "event_id": event_id, "ref": "s1"})
    refused = await supervisor.until(lambda m: m["type"] == "error" and m["ref"] == "s1")
    assert refused["code"] == "conflict" and "disposition" in refused["reason"]
    async with live.server.app[ENGINE].connect() as conn:
        kinds = (
            await conn.execute(
                sa.select(crisis_steps.c.kind, crisis_steps.c.actor_id)
                .where(crisis_steps.c.event_id == event_id)
                .order_by(crisis_steps.c.step_no)
            )
        ).all()
    steps = [(k.kind, k.actor_id) for k in kinds if k.kind not in ("notified",)]
    assert ("acknowledged", _staff_id(demo, "supervisor")) in steps
    assert ("assigned", _staff_id(demo, "admin")) in steps
    assert ("assigned", _staff_id(demo, "supervisor")) in steps
    assert ("note", _staff_id(demo, "supervisor")) in steps


async def test_a_reconnecting_dashboard_gets_the_open_events_in_its_snapshot(live: Room) -> None:
    host = await live.staff()
    patient = await live.admitted(host, 0)
    await patient.send({"type": "help", "text": ""})
    client = await signed_in(live.server, *staff_login(live.demo, "supervisor"))
    first = await dashboard(live.server, client, live)
    raised = await first.until(
        lambda m: (m["type"] == "snapshot" and m["events"]) or _event("raised")(m)
    )
    event_id = raised["events"][0]["id"] if raised["type"] == "snapshot" else raised["event"]["id"]
    await first.ws.close()
    again = await dashboard(live.server, client)
    snapshot = next(m for m in again.received if m["type"] == "snapshot")
    assert [e["id"] for e in snapshot["events"]] == [event_id]
    assert snapshot["events"][0]["level"] == "high"
    await again.ws.close()


async def test_the_dashboard_lists_the_live_session_with_counts(live: Room) -> None:
    host = await live.staff()
    await live.admitted(host, 0)
    await live.admitted(host, 1)
    waiting = await live.patient(2)
    supervisor = await dashboard(
        live.server, await signed_in(live.server, *staff_login(live.demo, "supervisor")), live
    )

    def counted(message: dict[str, Any]) -> bool:
        rows = message.get("sessions") if message["type"] in ("snapshot", "sessions") else None
        return any(
            s["id"] == live.room_id and s["live"] and s["in_room"] == 2 and s["waiting"] == 1
            for s in rows or []
        )

    row = next(s for s in (await supervisor.until(counted))["sessions"] if s["id"] == live.room_id)
    assert row["title"] == "Evening IOP Group A" and row["staff"] == 1
    # A third patient admitted: the count follows within a tick.
    await host.send({"type": "admit", "member_id": waiting.me})
    supervisor.received.clear()
    await supervisor.until(
        lambda m: (
            m["type"] == "sessions"
            and any(s["id"] == live.room_id and s["in_room"] == 3 for s in m["sessions"])
        )
    )


async def test_clinicians_cannot_open_the_dashboard_and_other_programs_see_nothing(
    live: Room,
) -> None:
    server, demo = live.server, live.demo
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await clinician.ws_connect("/ws/dashboard")
        assert refused.value.status == 403
        page = await clinician.get("/supervisor", allow_redirects=False)
        assert page.status == 403
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        program = await (
            await admin.post(
                "/api/programs",
                json={
                    "name": "Other IOP",
                    "time_zone": "America/Los_Angeles",
                    "phone": "(555) 010-0199",
                },
            )
        ).json()
        other = await (
            await admin.post(
                "/api/staff",
                json={
                    "program_id": program["id"],
                    "email": "other.supervisor@demo.iop.example",
                    "display_name": "Other Supervisor",
                    "role": "supervisor",
                    "password": "another long password",
                },
            )
        ).json()
    secret = await enrol_totp(server, other["id"])
    outsider = await dashboard(
        server,
        await signed_in(
            server, "other.supervisor@demo.iop.example", "another long password", secret
        ),
        live,
    )
    snapshot = next(m for m in outsider.received if m["type"] == "snapshot")
    assert all(s["id"] != live.room_id for s in snapshot["sessions"])
    supervisor = await dashboard(
        server, await signed_in(server, *staff_login(demo, "supervisor")), live
    )
    host = await live.staff()
    patient = await live.admitted(host, 0)
    await patient.send({"type": "help", "text": ""})
    event_id = (await supervisor.until(_event("raised")))["event"]["id"]
    await outsider.quiet(0.5)
    assert not [m for m in outsider.received if m["type"] == "event"]
    await outsider.send({"type": "ack", "event_id": event_id, "ref": "x"})
    answer = await outsider.until(lambda m: m["type"] == "error" and m["ref"] == "x")
    assert answer["code"] == "forbidden"


async def test_bad_dashboard_messages_get_an_error_and_the_socket_survives(live: Room) -> None:
    supervisor = await dashboard(
        live.server, await signed_in(live.server, *staff_login(live.demo, "supervisor")), live
    )
    for frame, code in (
        ("not json", "bad_json"),
        ('["a list"]', "bad_json"),
        ('{"type": "launch"}', "unknown_type"),
        ('{"type": "ack"}', "invalid"),
        ('{"type": "ack", "event_id": "../etc"}', "invalid"),
        ('{"type": "ack", "event_id": "00000000-0000-0000-0000-000000000000", "x": 1}', "invalid"),
        ('{"type": "hello", "protocol": 1}', "unexpected"),
    ):
        await supervisor.ws.send_str(frame)
        answer = await supervisor.until(lambda m: m["type"] == "error")
        assert answer["code"] == code, frame
        supervisor.received.remove(answer)
    missing = "00000000-0000-0000-0000-000000000000"
    await supervisor.send({"type": "ack", "event_id": missing, "ref": "m"})
    assert (await supervisor.until(lambda m: m["type"] == "error"))["code"] == "not_found"
    await supervisor.send({"type": "ping", "t": 1.0})
    pong = await supervisor.until(lambda m: m["type"] == "pong")
    assert pong["t"] == 1.0 and pong["server_time"] > 0


async def test_a_dashboard_must_say_hello_in_its_protocol(live: Room) -> None:
    client = await signed_in(live.server, *staff_login(live.demo, "supervisor"))
    async with client:
        ws = await client.ws_connect("/ws/dashboard")
        await ws.send_json({"type": "hello", "protocol": 99})
        peer = Peer(client, ws)
        assert (await peer.until(lambda m: m["type"] == "error"))["code"] == "protocol_version"
        assert await peer.closed() == CloseCode.PROTOCOL


async def test_the_assign_route_takes_over_and_hands_only_to_people_on_the_event(
    live: Room,
) -> None:
    demo = live.demo
    host = await live.staff()
    patient = await live.admitted(host, 0)
    await patient.send({"type": "help", "text": ""})
    async with await signed_in(live.server, *staff_login(demo, "supervisor")) as supervisor:
        listed: list[dict[str, Any]] = []
        for _ in range(50):
            listed = (await (await supervisor.get("/api/crisis/events")).json())["events"]
            if listed:
                break
            await patient.quiet(0.1)
        event_id = listed[0]["id"]
        backup = next(o["staff_id"] for o in demo["oncall"] if o["role"] == "backup")
        early = await supervisor.post(
            f"/api/crisis/events/{event_id}/assign", json={"staff_id": backup}
        )
        assert early.status == 422  # acknowledge (or take it over) first
        admin_id = _staff_id(demo, "admin")
        stranger = await supervisor.post(
            f"/api/crisis/events/{event_id}/assign", json={"staff_id": admin_id}
        )
        assert stranger.status == 422
        mine = await supervisor.post(
            f"/api/crisis/events/{event_id}/assign",
            json={"staff_id": _staff_id(demo, "supervisor")},
        )
        assert mine.status == 200, await mine.text()
        assert (await mine.json())["event"]["state"] == "acknowledged"
        again = await supervisor.post(
            f"/api/crisis/events/{event_id}/assign",
            json={"staff_id": _staff_id(demo, "supervisor")},
        )
        assert again.status == 422
        handed = await supervisor.post(
            f"/api/crisis/events/{event_id}/assign", json={"staff_id": backup, "note": "yours"}
        )
        assert handed.status == 200
        bad = await supervisor.post(f"/api/crisis/events/{event_id}/assign", json={"staff_id": 1})
        assert bad.status == 422
