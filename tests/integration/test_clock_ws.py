"""Running the session clock over the room socket: who may, what everyone receives."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.appkeys import ENGINE
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import audit_log
from tests.integration.test_rooms_ws import Room, room  # noqa: F401  (fixture)


def _clock(message: dict[str, Any]) -> bool:
    return message["type"] == "clock"


async def test_only_staff_run_the_clock_and_everyone_admitted_sees_it(room: Room) -> None:  # noqa: F811
    host = await room.staff()
    patient = await room.admitted(host, 0)
    snapshot = next(m for m in reversed(patient.received) if m["type"] == "snapshot")
    assert snapshot["clock"]["status"] == "not_started"
    assert snapshot["clock"]["phases"][0]["kind"] == "arrival"
    await patient.send({"type": "clock", "op": "start"})
    assert (await patient.until(lambda m: m["type"] == "error"))["code"] == "forbidden"
    await host.send({"type": "clock", "op": "start"})
    started = await patient.until(lambda m: _clock(m) and m["clock"]["status"] == "running")
    assert started["clock"]["remaining_s"] <= 600 and "server_time" in started
    await host.send({"type": "clock", "op": "extend"})
    assert (await host.until(lambda m: m["type"] == "error"))["code"] == "invalid"


async def test_plan_changes_and_the_check_in_round_over_the_socket(room: Room) -> None:  # noqa: F811
    host = await room.staff()
    alice = await room.admitted(host, 0)
    bob = await room.admitted(host, 1)
    await host.send({"type": "plan", "op": "minutes", "index": 3, "minutes": 70})
    await host.send({"type": "plan", "op": "drop", "index": 4})
    planned = await alice.until(lambda m: _clock(m) and len(m["clock"]["phases"]) == 6)
    assert planned["clock"]["phases"][3]["minutes"] == 70
    await host.send({"type": "clock", "op": "start"})
    await host.send({"type": "clock", "op": "jump", "index": 2})
    state = (await bob.until(lambda m: _clock(m) and (m["clock"]["checkin"] or {}).get("current")))[
        "clock"
    ]
    order = [state["checkin"]["current"], *state["checkin"]["queue"]]
    assert sorted(order) == sorted([alice.me, bob.me])
    speaker = alice if order[0] == alice.me else bob
    other = bob if speaker is alice else alice
    await other.send({"type": "checkin", "op": "next"})  # not their turn
    assert (await other.until(lambda m: m["type"] == "error"))["code"] == "forbidden"
    await speaker.send({"type": "checkin", "op": "pass"})
    moved = await host.until(
        lambda m: _clock(m) and (m["clock"]["checkin"] or {}).get("current") == other.me
    )
    assert moved["clock"]["checkin"]["passed"] == [speaker.me]
    await host.send({"type": "checkin", "op": "to_end", "member_id": speaker.me})
    await host.until(
        lambda m: _clock(m) and (m["clock"]["checkin"] or {}).get("queue") == [speaker.me]
    )


async def test_the_crisis_hand_off_is_a_clock_operation_with_its_own_audit_entry(
    room: Room,  # noqa: F811
) -> None:
    host = await room.staff()
    cohost = await room.staff("clinician", 1)
    await host.send({"type": "clock", "op": "start"})
    await host.send({"type": "clock", "op": "hand_off", "to": "cohost", "pause": True})
    handed = await cohost.until(lambda m: _clock(m) and m["clock"]["held_by"] == "cohost")
    assert handed["clock"]["status"] == "paused"
    await room.server.app[ROOM_JOURNAL].flush()
    async with room.server.app[ENGINE].connect() as conn:
        actions = [
            a
            for (a,) in await conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.seq))
        ]
    assert "clock.hand_off" in actions and "clock.start" in actions


async def test_a_speaker_passes_only_their_own_turn_never_someone_elses(room: Room) -> None:  # noqa: F811
    host = await room.staff()
    alice = await room.admitted(host, 0)
    bob = await room.admitted(host, 1)
    await host.send({"type": "clock", "op": "start"})
    await host.send({"type": "clock", "op": "jump", "index": 2})
    state = (await bob.until(lambda m: _clock(m) and (m["clock"]["checkin"] or {}).get("current")))[
        "clock"
    ]
    speaker = alice if state["checkin"]["current"] == alice.me else bob
    other = bob if speaker is alice else alice
    # The current speaker may not pass for the patient waiting after them.
    await speaker.send({"type": "checkin", "op": "pass", "member_id": other.me})
    assert (await speaker.until(lambda m: m["type"] == "error"))["code"] == "forbidden"
    await speaker.send({"type": "checkin", "op": "pass", "member_id": speaker.me})
    moved = await host.until(
        lambda m: _clock(m) and (m["clock"]["checkin"] or {}).get("current") == other.me
    )
    assert moved["clock"]["checkin"]["passed"] == [speaker.me]
