"""The supervisor dashboard's WebSocket messages: one declared schema per client message.

Version 1. The client says `hello` first and gets a full `snapshot` (sessions running
now, open crisis events, on-call staff, the server's time); after that the server pushes
`event` (one crisis event changed: raised, acknowledged, assigned, escalated, signed off),
`sessions` (live rooms' counts changed) and answers `pong`, `done` or `error`. Actions name
an event by id and carry a client `ref` that the `done`/`error` answer echoes. Anything
malformed gets an `error` back; the connection stays open.

Close codes are the room socket's (`CloseCode` in rooms/closecodes.py, tabled in
rooms/PROTOCOL.md); the dashboard meets these: 1001 SHUTDOWN (reconnect), 4400 PROTOCOL
(no or wrong `hello`, or no heartbeat: reconnect), 4401 SIGNED_OUT and 4402
ACCOUNT_DISABLED (the account's sessions ended: do not reconnect), 4403 REFUSED (not
allowed to watch: do not reconnect), 4408 SLOW (reconnect and resync), 4429 FLOOD (too
many invalid messages: reconnect).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from crisis.ledger import MAX_NOTE
from rooms.protocol import FrameParser, ProtocolError

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024
EventId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
Ref = Annotated[str, StringConstraints(max_length=40)]
NoteText = Annotated[str, StringConstraints(max_length=MAX_NOTE)]

__all__ = ["PROTOCOL_VERSION", "ProtocolError", "parse"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Hello(_Message):
    type: Literal["hello"]
    protocol: int


class Ping(_Message):
    type: Literal["ping"]
    t: float


class Ack(_Message):
    """Acknowledge by name (the signed-in user)."""

    type: Literal["ack"]
    event_id: EventId
    note: NoteText = ""
    ref: Ref = ""


class TakeOver(_Message):
    """Assign the event to the signed-in user (acknowledging it if nobody has)."""

    type: Literal["take_over"]
    event_id: EventId
    ref: Ref = ""


class Reassign(_Message):
    """Hand the event to one of its clinicians or the on-call staff."""

    type: Literal["reassign"]
    event_id: EventId
    staff_id: EventId
    note: NoteText = ""
    ref: Ref = ""


class AddNote(_Message):
    """A note on the event's timeline (recorded as a debrief note)."""

    type: Literal["note"]
    event_id: EventId
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NOTE)]
    ref: Ref = ""


class SignOff(_Message):
    type: Literal["sign_off"]
    event_id: EventId
    note: NoteText = ""
    ref: Ref = ""


ClientMessage = Annotated[
    Hello | Ping | Ack | TakeOver | Reassign | AddNote | SignOff, Field(discriminator="type")
]
ACTIONS = (Ack, TakeOver, Reassign, AddNote, SignOff)
_PARSER: FrameParser[ClientMessage] = FrameParser(ClientMessage, MAX_FRAME_BYTES)
MESSAGE_TYPES = _PARSER.types


def parse(frame: str | bytes) -> ClientMessage:
    """Validate one client frame, or raise `ProtocolError` saying what is wrong."""
    return _PARSER.parse(frame)
