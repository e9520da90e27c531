"""The idle lock: a locked screen opens no room, and a live call goes on through it."""

from __future__ import annotations

from rooms.closecodes import CloseCode
from server.appkeys import CLOCK
from tests.conftest import signed_in, staff_login
from tests.integration.test_rooms_ws import Room, room  # noqa: F401  (fixture)


async def test_a_locked_screen_cannot_open_a_room_but_a_live_call_carries_on(
    room: Room,  # noqa: F811
) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    supervisor = await signed_in(room.server, *staff_login(room.demo, "supervisor"))
    room.server.app[CLOCK].advance(minutes=16)  # every staff screen is now locked
    try:
        # Opening the room, by its page or its socket, waits for the password.
        page = await supervisor.get(f"/rooms/{room.room_id}", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"].startswith("/unlock?next=")
        refused = await room._open(supervisor)
        error = next(m for m in refused.received if m["type"] == "error")
        assert error["code"] == "locked"
        assert await refused.closed() == CloseCode.SCREEN_LOCKED
    finally:
        await supervisor.close()
    # The host's live call is untouched: messages flow, and a dropped socket comes back.
    await host.send({"type": "chat", "to": "room", "text": "still with you"})
    await patient.until(lambda m: m["type"] == "chat" and m["text"] == "still with you")
    await host.ws.close()
    back = await room._open(host.http, last_seq=None)
    assert back.received[-1]["type"] == "snapshot"
