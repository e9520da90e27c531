"""Live rooms by id, and the rule that a patient is in at most one room at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rooms.hub import RoomHub
from rooms.model import Presence, RoomError


class RoomRegistry:
    """The rooms this process runs."""

    def __init__(self) -> None:
        self._hubs: dict[str, RoomHub] = {}

    def get(self, room_id: str) -> RoomHub | None:
        """The live room, or None."""
        return self._hubs.get(room_id)

    def get_or_create(self, room_id: str, make: Callable[[], RoomHub]) -> RoomHub:
        """The live room, created by `make` on first use."""
        hub = self._hubs.get(room_id)
        if hub is None:
            hub = make()
            self._hubs[room_id] = hub
        return hub

    def check_single_room(self, member_key: str, room_id: str) -> None:
        """Refuse a patient who is waiting or present in another live room."""
        for other_id, hub in self._hubs.items():
            if other_id == room_id:
                continue
            member = hub.room.members.get(member_key)
            if member is not None and member.presence in (
                Presence.WAITING,
                Presence.ADMITTED,
                Presence.RECONNECTING,
            ):
                raise RoomError("in_another_room", "you are already in another session")

    def drop(self, room_id: str) -> None:
        """Forget an ended room."""
        self._hubs.pop(room_id, None)

    def __iter__(self) -> Iterator[RoomHub]:
        return iter(list(self._hubs.values()))
