"""Breakout rooms over the real room socket: who may, who sees what, the timer, a restart,
and real aiortc peers proving who hears whom."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from yarl import URL

from server.appkeys import CLOCK, ENGINE
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import attendance_events, audit_log, crisis_events, sessions
from tests.conftest import consent_group, start_server
from tests.integration.test_media_ws import (  # noqa: F401  (fixture)
    MediaRoomClient,
    media_room,
    sees,
    until,
)
from tests.integration.test_rooms_ws import Peer, Room, room  # noqa: F401  (fixture)


def _breakouts(message: dict[str, Any]) -> bool:
    return message["type"] == "breakouts"


def _open(message: dict[str, Any]) -> bool:
    return _breakouts(message) and message["breakouts"] is not None


async def _three_in_two(room: Room) -> tuple[Peer, Peer, Peer, Peer]:  # noqa: F811
    host = await room.staff()
    ana, ben, cam = [await room.admitted(host, i) for i in range(3)]
    await host.send(
        {
            "type": "breakouts_start",
            "mode": "hand",
            "assign": [[ana.me, ben.me], [cam.me]],
            "prompt": "Practise DEAR MAN",
            "minutes": 10,
        }
    )
    return host, ana, ben, cam


async def test_only_facilitators_split_and_each_patient_sees_only_their_breakout(
    room: Room,  # noqa: F811
) -> None:
    host = await room.staff()
    ana = await room.admitted(host, 0)
    await ana.send({"type": "breakouts_start", "mode": "random", "rooms": 2, "minutes": 5})
    assert (await ana.until(lambda m: m["type"] == "error"))["code"] == "forbidden"
    await host.send({"type": "breakouts_start", "mode": "random", "minutes": 500})
    assert (await host.until(lambda m: m["type"] == "error"))["code"] == "invalid"
    ben, cam = await room.admitted(host, 1), await room.admitted(host, 2)
    await host.send(
        {"type": "breakouts_start", "mode": "hand", "assign": [[ana.me], [cam.me]], "minutes": 5}
    )
    refused = await host.until(lambda m: m["type"] == "error" and "everyone" in m["reason"])
    assert refused["code"] == "invalid"
    host.received.clear()
    await host.send(
        {
            "type": "breakouts_start",
            "mode": "hand",
            "assign": [[ana.me, ben.me], [cam.me]],
            "prompt": "Practise DEAR MAN",
            "minutes": 10,
        }
    )
    staff_view = (await host.until(_open))["breakouts"]
    assert [r["members"] for r in staff_view["rooms"]] == [[ana.me, ben.me], [cam.me]]
    mine = (await cam.until(_open))["breakouts"]
    assert mine["room"]["name"] == "Room 2" and mine["room"]["members"] == [cam.me]
    assert mine["prompt"] == "Practise DEAR MAN" and 590 < mine["remaining_s"] <= 600
    assert "rooms" not in mine  # nothing about the other breakout
    # Attendance keeps counting: nobody left or rejoined the session by moving.
    await room.server.app[ROOM_JOURNAL].flush()
    async with room.server.app[ENGINE].connect() as conn:
        events = (
            (await conn.execute(sa.select(attendance_events.c.event).order_by("at")))
            .scalars()
            .all()
        )
    assert "left" not in events and "disconnected" not in events


async def test_calls_visits_broadcast_help_and_recall_reach_the_right_people(
    room: Room,  # noqa: F811
) -> None:
    host, ana, ben, cam = await _three_in_two(room)
    supervisor = await room.staff("supervisor")
    await cam.until(_open)
    await cam.send({"type": "facilitator_call"})
    for staff in (host, supervisor):
        call = await staff.until(lambda m: m["type"] == "facilitator_call")
        assert (call["member_id"], call["breakout_name"]) == (cam.me, "Room 2")
    await host.send({"type": "breakout_visit", "breakout_id": "b2"})
    answered = await cam.until(lambda m: _open(m) and m["breakouts"]["called"] is False)
    assert answered["breakouts"]["room"]["id"] == "b2"
    await supervisor.send({"type": "breakouts_recall"})
    assert (await supervisor.until(lambda m: m["type"] == "error"))["code"] == "forbidden"
    await host.send({"type": "breakout_broadcast", "text": "Two minutes left"})
    for person in (ana, ben, cam):
        said = await person.until(lambda m: m["type"] == "breakout_broadcast")
        assert said["text"] == "Two minutes left"
    # The private "I need help" inside a breakout reaches the supervisor as in the group.
    await ana.send({"type": "help", "text": ""})
    alert = await supervisor.until(lambda m: m["type"] == "help")
    assert alert["from"] == ana.me
    await ana.until(lambda m: m["type"] == "help_received")
    async with room.server.app[ENGINE].connect() as conn:
        triggers = (await conn.execute(sa.select(crisis_events.c.trigger))).scalars().all()
    assert "help_button" in triggers
    await host.send({"type": "breakouts_recall"})
    for person in (ana, ben, cam, host):
        back = await person.until(lambda m: _breakouts(m) and m["breakouts"] is None)
        assert back["recalled"] == "host"


async def _breakout_audit(room: Room) -> list[Any]:  # noqa: F811
    await room.server.app[ROOM_JOURNAL].flush()
    async with room.server.app[ENGINE].connect() as conn:
        return list(
            await conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.action.like("breakouts.%"))
                .order_by(audit_log.c.seq)
            )
        )


async def test_splitting_moving_visiting_broadcasting_and_recalling_are_audited(
    room: Room,  # noqa: F811
) -> None:
    host, ana, ben, cam = await _three_in_two(room)
    await cam.until(_open)
    await host.send({"type": "breakout_move", "member_id": cam.me, "breakout_id": "b1"})
    await cam.until(lambda m: _open(m) and m["breakouts"]["room"]["id"] == "b1")
    await host.send({"type": "breakout_visit", "breakout_id": "b2"})
    await host.send({"type": "breakout_broadcast", "text": "Two minutes left"})
    await ana.until(lambda m: m["type"] == "breakout_broadcast")
    await host.send({"type": "breakouts_recall"})
    await ana.until(lambda m: _breakouts(m) and m["breakouts"] is None)
    rows = await _breakout_audit(room)
    assert [r.action for r in rows] == [
        "breakouts.start",
        "breakouts.move",
        "breakouts.visit",
        "breakouts.broadcast",
        "breakouts.recall",
    ]
    host_id = host.me.split(":", 1)[1]
    assert {(r.actor_type, r.actor_id) for r in rows} == {("staff", host_id)}
    start, move = rows[0], rows[1]
    assert start.detail["mode"] == "hand" and start.detail["rooms"] == 2
    assert start.detail["patients"] == 3 and start.detail["minutes"] == 10
    assert (move.target_type, move.target_id) == ("patient", cam.me.split(":", 1)[1])
    assert move.detail["breakout_id"] == "b1"
    assert rows[-1].detail["reason"] == "host"
    # Ids and counts only: neither the prompt nor what was said.
    text = " ".join(str(r.detail) for r in rows)
    assert "DEAR MAN" not in text and "Two minutes" not in text


async def test_the_timer_warns_a_minute_before_and_recalls_everyone_when_time_moves(
    room: Room,  # noqa: F811
) -> None:
    host, ana, _ben, cam = await _three_in_two(room)
    await ana.until(_open)
    room.server.app[CLOCK].advance(minutes=9, seconds=5)
    warned = await ana.until(lambda m: _open(m) and m["breakouts"]["warning"])
    assert warned["breakouts"]["remaining_s"] <= 60
    room.server.app[CLOCK].advance(minutes=1)
    for person in (ana, cam, host):
        back = await person.until(lambda m: _breakouts(m) and m["breakouts"] is None)
        assert back["recalled"] == "timer"
    recall = (await _breakout_audit(room))[-1]
    assert (recall.action, recall.actor_type) == ("breakouts.recall", "system")
    assert recall.detail["reason"] == "timer"


async def test_a_dropped_patient_rejoins_their_breakout(room: Room) -> None:  # noqa: F811
    _host, _ana, _ben, cam = await _three_in_two(room)
    await cam.until(_open)
    await cam.ws.close()
    again = await room._open(cam.http)
    snapshot = next(m for m in again.received if m["type"] == "snapshot")
    assert snapshot["breakouts"]["room"]["id"] == "b2"


async def test_a_restart_keeps_the_breakouts_and_their_timer(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "data"
    first = await start_server(data, database_url)
    demo = await first.seed_demo()
    await consent_group(first, demo)
    before = Room(first, demo)
    try:
        _host, _ana, _ben, cam = await _three_in_two(before)
        ends_at = (await cam.until(_open))["breakouts"]["ends_at"]
        await first.app[ROOM_JOURNAL].flush()
        async with first.app[ENGINE].connect() as conn:
            saved = await conn.scalar(
                sa.select(sessions.c.room_state).where(sessions.c.id == before.room_id)
            )
        assert saved["breakouts"]["ends_at"] == ends_at
    finally:
        await before.close()
        await first.runner.cleanup()
    second = await start_server(data, database_url)
    after = Room(second, demo)
    try:
        phone = second.client()
        join = URL(demo["groups"][0]["patients"][2]["join_url"])
        assert (await phone.get(join.path_qs)).status == 200
        again = await after._open(phone)
        snapshot = next(m for m in again.received if m["type"] == "snapshot")
        assert snapshot["you"]["presence"] == "admitted"
        assert snapshot["breakouts"]["room"]["id"] == "b2"
        assert snapshot["breakouts"]["ends_at"] == ends_at
    finally:
        await after.close()
        await second.runner.cleanup()


async def test_real_peers_hear_only_their_breakout_until_recalled(
    media_room: MediaRoomClient,  # noqa: F811
) -> None:
    host = await media_room.host()
    ana, ben, cam = [await media_room.patient(host, i) for i in range(3)]
    people = [host, ana, ben, cam]
    for person in people:
        await person.send({"type": "media_join"})
    await until(lambda: all(sees(a, b, "audio") for a in people for b in people if a is not b))
    await host.send(
        {
            "type": "breakouts_start",
            "mode": "hand",
            "assign": [[ana.me, ben.me], [cam.me]],
            "minutes": 10,
        }
    )
    await until(lambda: any(m["type"] == "breakouts" for m in cam.messages))

    async def flowing(window: float = 1.0) -> set[tuple[str, str]]:
        """(listener, speaker) pairs whose audio keeps arriving."""
        await asyncio.sleep(0.5)  # packets already in flight land first
        start = {(a.me, b.me): a.peer.frames[(b.me, "audio")] for a in people for b in people}
        await asyncio.sleep(window)
        return {
            (a.me, b.me)
            for a in people
            for b in people
            if a is not b and a.peer.frames[(b.me, "audio")] > start[(a.me, b.me)]
        }

    assert await flowing() == {(ana.me, ben.me), (ben.me, ana.me)}
    await host.send({"type": "breakout_visit", "breakout_id": "b2"})
    heard = host.peer.frames[(cam.me, "audio")]
    await until(lambda: sees(host, cam, "audio", heard + 20))
    assert await flowing() == {
        (ana.me, ben.me),
        (ben.me, ana.me),
        (host.me, cam.me),
        (cam.me, host.me),
    }
    await host.send({"type": "breakouts_recall"})
    await until(lambda: any(m["type"] == "breakouts" and m.get("recalled") for m in ana.messages))
    assert await flowing() == {(a.me, b.me) for a in people for b in people if a is not b}


def _chat(text: str) -> Any:
    return lambda m: m["type"] == "chat" and m["text"] == text


def _texts(messages: list[dict[str, Any]]) -> set[str]:
    return {m["text"] for m in messages if m["type"] == "chat"}


async def test_chat_stays_in_its_breakout_staff_see_every_one_labelled(
    room: Room,  # noqa: F811
) -> None:
    host, ana, ben, cam = await _three_in_two(room)
    supervisor = await room.staff("supervisor")
    await cam.until(_open)
    dev = await room.admitted(host, 3)  # a late arrival: the main room
    await ana.send({"type": "chat", "to": "room", "text": "Room 1 practice"})
    for person in (ana, ben, host, supervisor):
        said = await person.until(_chat("Room 1 practice"))
        assert said["breakout"] == {"id": "b1", "name": "Room 1"}
    await cam.send({"type": "chat", "to": "room", "text": "Room 2 alone"})
    for person in (cam, host, supervisor):
        said = await person.until(_chat("Room 2 alone"))
        assert said["breakout"] == {"id": "b2", "name": "Room 2"}
    await dev.send({"type": "chat", "to": "room", "text": "Main room hello"})
    for person in (dev, host, supervisor):
        said = await person.until(_chat("Main room hello"))
        assert said["breakout"] is None  # the main room while breakouts are open
    # The host in the main room writes to the main room; visiting Room 2, to Room 2.
    await host.send({"type": "chat", "to": "room", "text": "Host in the main room"})
    await dev.until(_chat("Host in the main room"))
    await host.send({"type": "breakout_visit", "breakout_id": "b2"})
    await host.send({"type": "chat", "to": "room", "text": "Host visiting Room 2"})
    for person in (cam, supervisor):
        said = await person.until(_chat("Host visiting Room 2"))
        assert said["breakout"] == {"id": "b2", "name": "Room 2"}
    # Private chat to staff is unchanged.
    await ben.send({"type": "chat", "to": "staff", "text": "Just for you"})
    private = await host.until(_chat("Just for you"))
    assert private["channel"] == "private" and "breakout" not in private
    await supervisor.until(_chat("Just for you"))
    others = {"Room 2 alone", "Main room hello", "Host in the main room", "Host visiting Room 2"}
    for person, never in (
        (ana, others),
        (ben, others - {"Just for you"}),
        (cam, {"Room 1 practice", "Main room hello", "Host in the main room", "Just for you"}),
        (dev, {"Room 1 practice", "Room 2 alone", "Host visiting Room 2", "Just for you"}),
    ):
        assert not _texts(person.received + await person.quiet()) & never

    # After recall, chat is the whole room's again, without a breakout label.
    await host.send({"type": "breakouts_recall"})
    for person in (ana, ben, cam, dev):
        await person.until(lambda m: _breakouts(m) and m["breakouts"] is None)
    await cam.send({"type": "chat", "to": "room", "text": "Back together"})
    for person in (ana, ben, cam, dev, host, supervisor):
        said = await person.until(_chat("Back together"))
        assert "breakout" not in said


async def test_a_reconnecting_patient_gets_only_their_own_breakouts_chat(
    room: Room,  # noqa: F811
) -> None:
    host, ana, _ben, cam = await _three_in_two(room)
    await cam.until(_open)
    await ana.send({"type": "chat", "to": "room", "text": "Room 1 only"})
    await cam.send({"type": "chat", "to": "room", "text": "Room 2 only"})
    await host.until(_chat("Room 1 only"))
    await host.until(_chat("Room 2 only"))
    for person, mine in ((cam, "Room 2 only"), (ana, "Room 1 only")):
        await person.ws.close()
        again = await room._open(person.http)
        snapshot = next(m for m in again.received if m["type"] == "snapshot")
        assert _texts(snapshot["chat"]) == {mine}
    await host.ws.close()
    again = await room._open(host.http)
    snapshot = next(m for m in again.received if m["type"] == "snapshot")
    labels = {m["text"]: m["breakout"]["name"] for m in snapshot["chat"]}
    assert labels == {"Room 1 only": "Room 1", "Room 2 only": "Room 2"}
