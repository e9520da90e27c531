"""One socket sending fast: the room keeps everyone connected, and help is never lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.appkeys import CLOCK, ENGINE
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import crisis_events, notification_outbox
from tests.conftest import consent_group, start_server
from tests.integration.test_rooms_ws import Room, room  # noqa: F401  (fixture)


def _chat(text: str) -> dict[str, Any]:
    return {"type": "chat", "to": "room", "text": text}


def _limited(message: dict[str, Any], kind: str) -> bool:
    return (
        message["type"] == "error" and message["code"] == "rate_limited" and message["kind"] == kind
    )


async def test_a_chat_flood_is_slowed_calmly_and_nobody_is_disconnected(room: Room) -> None:  # noqa: F811
    host = await room.staff()
    alice = await room.admitted(host, 0)
    bob = await room.admitted(host, 1)
    # More than a socket's outbox holds: without a limit every member would get all of it.
    for n in range(300):
        await alice.send(_chat(f"message {n}"))
    await alice.send({"type": "ping", "t": 1})
    await alice.until(lambda m: m["type"] == "pong")
    notices = [m for m in alice.received if m["type"] == "error"]
    assert len(notices) == 1 and _limited(notices[0], "chat")
    assert notices[0]["retry_after_s"] > 0
    await bob.send({"type": "ping", "t": 2})
    await bob.until(lambda m: m["type"] == "pong")
    got = [m["text"] for m in bob.received if m["type"] == "chat"]
    assert got == [f"message {n}" for n in range(10)]  # the burst (IOP_WS_CHAT_BURST)
    # Everyone is still here, and the flooder may write again after a pause.
    room.server.app[CLOCK].advance(seconds=2)
    await alice.send(_chat("sorry, my keyboard"))
    await bob.until(lambda m: m["type"] == "chat" and m["text"] == "sorry, my keyboard")
    for peer in (host, alice, bob):
        assert not peer.ws.closed


async def test_reactions_past_their_rate_are_not_sent_on(room: Room) -> None:  # noqa: F811
    host = await room.staff()
    alice = await room.admitted(host, 0)
    for _ in range(40):
        await alice.send({"type": "react", "reaction": "thumbs_up"})
    await alice.send({"type": "ping", "t": 1})
    await alice.until(lambda m: m["type"] == "pong")
    assert [m for m in alice.received if m["type"] == "error"][0]["kind"] == "react"
    await host.send({"type": "ping", "t": 1})
    await host.until(lambda m: m["type"] == "pong")
    assert len([m for m in host.received if m["type"] == "reaction"]) == 5


async def test_help_presses_past_the_rate_join_the_open_event_without_new_pages(
    room: Room,  # noqa: F811
) -> None:
    host = await room.staff()
    alice = await room.admitted(host, 0)
    presses = [f"press-{n}" for n in range(12)]
    for n, press_id in enumerate(presses):
        await alice.send({"type": "help", "text": f"help {n}", "press_id": press_id})
    # Every press is confirmed to her once stored, the folded ones too.
    for press_id in presses:
        await alice.until(lambda m, p=press_id: m["type"] == "help_received" and m["press_id"] == p)
    assert not [m for m in alice.received if m["type"] == "error"]
    await host.send({"type": "ping", "t": 1})
    await host.until(lambda m: m["type"] == "pong")
    # The room alerts staff for the first presses (IOP_WS_HELP_BURST) only.
    assert [m["text"] for m in host.received if m["type"] == "help"] == [
        "help 0",
        "help 1",
        "help 2",
    ]
    await room.server.app[ROOM_JOURNAL].flush()
    patient_id = alice.me.split(":", 1)[1]
    async with room.server.app[ENGINE].connect() as conn:
        event_id = await conn.scalar(
            sa.select(crisis_events.c.id).where(crisis_events.c.patient_id == patient_id)
        )
        kinds = (
            (
                await conn.execute(
                    sa.select(notification_outbox.c.kind).where(
                        notification_outbox.c.event_id == event_id
                    )
                )
            )
            .scalars()
            .all()
        )
    # Raised once and two further presses told: nothing for the nine past the rate.
    assert sorted(kinds) == ["concern_added", "concern_added", "raised"]
    timeline = (await (await host.http.get(f"/api/crisis/events/{event_id}")).json())["timeline"]
    added = [s["data"] for s in timeline if s["kind"] == "concern_added"]
    folded = [d for d in added if d["detail"].get("presses")]
    assert sum(d["detail"]["presses"] for d in folded) == 9
    texts = "\n".join(d["detail"]["message"] for d in folded)
    assert all(f"help {n}" in texts for n in range(3, 12))
    # A minute on, a press is a fresh alert again.
    room.server.app[CLOCK].advance(seconds=61)
    await alice.send({"type": "help", "text": "still here", "press_id": "later"})
    await host.until(lambda m: m["type"] == "help" and m["text"] == "still here")


@pytest.fixture
async def small_room(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Room]:
    server = await start_server(
        tmp_path / "data", sqlite_url, {"IOP_ROOM_CHAT_KEPT": "10", "IOP_WS_CHAT_BURST": "50"}
    )
    opened: Room | None = None
    try:
        demo = await server.seed_demo()
        await consent_group(server, demo)
        opened = Room(server, demo)
        yield opened
    finally:
        if opened is not None:
            await opened.close()
        await server.runner.cleanup()


async def test_a_room_keeps_only_its_latest_chat(small_room: Room) -> None:
    host = await small_room.staff()
    alice = await small_room.admitted(host, 0)
    for n in range(25):
        await host.send(_chat(f"line {n}"))
    await alice.until(lambda m: m["type"] == "chat" and m["text"] == "line 24")
    # Back on a new socket without a seq: the snapshot replays what the room still keeps.
    await alice.ws.close()
    again = await small_room._open(alice.http)
    snapshot = next(m for m in reversed(again.received) if m["type"] == "snapshot")
    assert [m["text"] for m in snapshot["chat"]] == [f"line {n}" for n in range(15, 25)]
