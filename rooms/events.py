"""What a room tells the world, and the ports it calls for media and drop steps.

The server injects one `RoomEvents` (storage, audit, the crisis path, media bookkeeping),
one `MediaPort` (the SFU) and one `DropSteps` (the crisis timeline); the room calls them
after its permission check. Everything here is called from the event loop: `RoomEvents`
methods must not block, the ports are awaited by the socket's read loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from rooms import protocol as p
from rooms.clock import SessionClock
from rooms.model import Member, RoomState


class MemberEvent(StrEnum):
    """An attendance event: how a member's presence changed."""

    WAITING = "waiting"
    JOINED = "joined"
    ADMITTED = "admitted"
    DISCONNECTED = "disconnected"
    LEFT = "left"
    REMOVED = "removed"


Stored = Callable[[], None]


class RoomEvents(Protocol):
    """Everything a room reports; none of these may refuse what already happened."""

    def presence(self, member: Member, event: MemberEvent, at: dt.datetime) -> None:
        """An attendance event."""

    def member_changed(self, member: Member) -> None:
        """Any change of a member's state (presence, mute, space), before it is published."""

    def room_saved(self, persisted: dict[str, Any]) -> None:
        """What another process needs to take the room over (`Room.persisted`)."""

    def state_changed(self, state: RoomState) -> None:
        """The session went live or ended."""

    def clock_changed(self, clock: SessionClock, op: str, member: Member | None) -> None:
        """The session clock changed by `op` (`member` None: the room itself did it)."""

    def help_pressed(
        self, member: Member, text: str, at: dt.datetime, stored: Stored, *, repeat: int = 0
    ) -> None:
        """Raise a help press as a concern; call `stored` once it is committed.

        The patient is told "your clinician has been told" only when that is true even if
        this node dies now. `repeat` > 0: that many presses past the help rate, to be added
        to the patient's open event as one step without paging anyone again.
        """

    def private_room_opened(self, patient: Member, clinician: Member, at: dt.datetime) -> None:
        """A clinician took a patient to a private room (the crisis path)."""

    def breakouts_changed(
        self, op: str, member: Member | None, target: str | None, detail: dict[str, Any]
    ) -> None:
        """Breakout rooms opened, someone moved or visited, a broadcast, or a recall
        (`member` None: the timer did it); `target` is the member moved, `detail` ids and
        counts only, never what was said."""


class QuietEvents:
    """A room with nothing behind it (a room driven by tests alone): help is stored at once."""

    def presence(self, member: Member, event: MemberEvent, at: dt.datetime) -> None:
        """Nothing is recorded."""

    def member_changed(self, member: Member) -> None:
        """Nothing follows a member."""

    def room_saved(self, persisted: dict[str, Any]) -> None:
        """Nothing is saved."""

    def state_changed(self, state: RoomState) -> None:
        """Nothing is recorded."""

    def clock_changed(self, clock: SessionClock, op: str, member: Member | None) -> None:
        """Nothing is recorded."""

    def help_pressed(
        self, member: Member, text: str, at: dt.datetime, stored: Stored, *, repeat: int = 0
    ) -> None:
        """Confirm at once: there is nothing durable to wait for."""
        stored()

    def private_room_opened(self, patient: Member, clinician: Member, at: dt.datetime) -> None:
        """Nothing is recorded."""

    def breakouts_changed(
        self, op: str, member: Member | None, target: str | None, detail: dict[str, Any]
    ) -> None:
        """Nothing is recorded."""


class MediaPort(Protocol):
    """The room's media (the SFU), called once the room allowed the message.

    Refusals raise `RoomError`; its code and reason go back to the client.
    """

    async def join(
        self, member_id: str, *, publishes: bool, may_share_screen: bool, receive_video: bool
    ) -> None:
        """Start (or replace) a member's media connection."""

    async def answer(self, member_id: str, sdp: str) -> None:
        """The member's answer to the latest offer."""

    async def update(
        self, member_id: str, *, screen: bool | None, receive_video: bool | None
    ) -> None:
        """Start or stop a screen share; turn others' video off or on."""

    async def leave(self, member_id: str) -> None:
        """Stop the member's media (they stay in the room)."""

    async def allow_screen(self, member_id: str, allowed: bool) -> None:
        """Let a participant share their screen, or take that back."""


class DropSteps(Protocol):
    """The crisis timeline's dropped-connection steps, called once the room allowed it.

    Refusals raise `RoomError` or `ProtocolError`; their code and reason go to the client.
    """

    async def record(self, member: Member, message: p.DropStep) -> None:
        """Log one step of a dropped-connection prompt as taken or skipped."""
