"""The shared handout view: the host shows a handout to everyone and turns its pages.

What is shown, and on which page, is room state (saved with the room), so a patient who
reconnects, or a room that moves to another process, opens it on the same page. The rules
are care.handouts'; this part checks who may and publishes the change.
"""

from __future__ import annotations

from typing import Any

from care.handouts import HandoutError, SharedView, Shelved, show, turn
from rooms import outbound
from rooms import protocol as p
from rooms.live import LiveRoom
from rooms.model import Member, RoomAction, RoomError


class HandoutView:
    """The handouts one room offers, and the one its host is showing."""

    def __init__(self, live: LiveRoom, shelf: list[Shelved]) -> None:
        self._live = live
        self.shelf = list(shelf)

    @property
    def current(self) -> SharedView | None:
        """What is shown now, or None."""
        saved = self._live.room.handout
        return None if saved is None else SharedView.from_json(saved)

    def shelf_view(self) -> list[dict[str, Any]]:
        """The shelf as the wire sends it."""
        return [item.to_json() for item in self.shelf]

    def view(self) -> dict[str, Any] | None:
        """The shared view as the wire sends it."""
        current = self.current
        return None if current is None else current.to_json()

    def set_shelf(self, shelf: list[Shelved]) -> None:
        """The session's handouts changed (attached, detached, a new version): tell everyone."""
        if list(shelf) == self.shelf:
            return
        self.shelf = list(shelf)
        self._live.connections.publish(self._live.everyone(), outbound.handouts(self.shelf_view()))

    def on_handout(self, member: Member, message: p.Handout) -> None:
        """Show a handout to everyone, turn its page, or stop showing it."""
        room = self._live.room
        room.check(member, RoomAction.SHOW_HANDOUT)
        try:
            if message.op == "show":
                if message.handout_id is None or message.version is None:
                    raise RoomError("invalid", "say which handout and version")
                shown: SharedView | None = show(
                    self.shelf, message.handout_id, message.version, message.page or 0, member.id
                )
            elif message.op == "page":
                if message.page is None:
                    raise RoomError("invalid", "say which page")
                shown = turn(self.current, message.page, member.id)
            else:
                if self.current is None:
                    raise RoomError("not_showing", "no handout is being shown")
                shown = None
        except HandoutError as exc:
            raise RoomError(exc.code, exc.reason) from None
        room.handout = None if shown is None else shown.to_json()
        self._live.events.room_saved(room.persisted())
        self._live.connections.publish(self._live.everyone(), outbound.handout_view(self.view()))
