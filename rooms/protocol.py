"""The signaling protocol: one declared, validated schema per client message type.

Version 1. Every client message is a JSON object with a `type`; anything else (unknown
types, missing or extra fields, wrong types, long strings, frames over 64 KiB) is refused
with a `ProtocolError` whose code the server sends back in an `error` message. Server
messages carry a per-room `seq`; see PROTOCOL.md beside this file.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_CHAT_CHARS = 1000
MemberId = Annotated[
    str, StringConstraints(min_length=3, max_length=80, pattern=r"^[a-z]+:[\w-]+$")
]
ChatText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CHAT_CHARS)]
REACTIONS = ("thumbs_up", "need_a_moment")


class ProtocolError(Exception):
    """A message the server refuses, with a reason code for the client."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


M = TypeVar("M")


class FrameParser(Generic[M]):
    """Frames of one protocol: JSON objects whose `type` picks one of a union's models."""

    def __init__(self, union: Any, max_bytes: int) -> None:
        self._adapter: TypeAdapter[M] = TypeAdapter(union)
        self.max_bytes = max_bytes
        self.types = frozenset(
            get_args(model.model_fields["type"].annotation)[0]
            for model in get_args(get_args(union)[0])
        )

    def parse(self, frame: str | bytes) -> M:
        """Validate one client frame, or raise `ProtocolError` saying what is wrong."""
        if len(frame) > self.max_bytes:
            raise ProtocolError("too_large", f"frames are limited to {self.max_bytes} bytes")
        try:
            data = json.loads(frame)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ProtocolError("bad_json", "a message must be a JSON object") from None
        if not isinstance(data, dict):
            raise ProtocolError("bad_json", "a message must be a JSON object")
        kind = data.get("type")
        if not isinstance(kind, str) or kind not in self.types:
            raise ProtocolError("unknown_type", "unknown message type")
        try:
            return self._adapter.validate_python(data)
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"][1:]) or "message"
            raise ProtocolError("invalid", f"{where}: {first['msg']}") from None


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Hello(_Message):
    type: Literal["hello"]
    protocol: int
    last_seq: Annotated[int, Field(ge=0)] | None = None


class Ping(_Message):
    type: Literal["ping"]
    t: float


class Admit(_Message):
    type: Literal["admit"]
    member_id: MemberId


class AdmitAll(_Message):
    type: Literal["admit_all"]


class Lock(_Message):
    type: Literal["lock"]
    locked: bool


class Remove(_Message):
    type: Literal["remove"]
    member_id: MemberId


class Mute(_Message):
    """Block (True) or allow (False) a member's audio and/or video."""

    type: Literal["mute"]
    member_id: MemberId
    audio: bool | None = None
    video: bool | None = None


class LowerHand(_Message):
    type: Literal["lower_hand"]
    member_id: MemberId


class RaiseHand(_Message):
    type: Literal["raise_hand"]
    raised: bool


class React(_Message):
    type: Literal["react"]
    reaction: Literal["thumbs_up", "need_a_moment"]


class AskUnmute(_Message):
    type: Literal["ask_unmute"]


class Chat(_Message):
    """`to`: "room" (everyone admitted), "staff" (a patient to the clinicians), or a
    patient's member id (staff replying privately to that patient)."""

    type: Literal["chat"]
    to: Annotated[str, StringConstraints(min_length=3, max_length=80)]
    text: ChatText


class Note(_Message):
    """A staff-only note; it never reaches a patient."""

    type: Literal["note"]
    about: MemberId | None = None
    text: ChatText


class Clock(_Message):
    """Run the session clock (host and co-host)."""

    type: Literal["clock"]
    op: Literal["start", "pause", "resume", "extend", "next", "previous", "jump", "hand_off"]
    minutes: Annotated[int, Field(ge=1, le=60)] | None = None
    index: Annotated[int, Field(ge=0, le=40)] | None = None
    to: Literal["host", "cohost"] | None = None
    pause: bool | None = None


class Checkin(_Message):
    """Run the check-in round; a speaker may also end or pass their own turn."""

    type: Literal["checkin"]
    op: Literal["next", "pass", "skip", "to_end", "reorder"]
    member_id: MemberId | None = None
    order: Annotated[list[MemberId], Field(max_length=40)] | None = None


class Grounding(_Message):
    """Host-paced steps of the 5-4-3-2-1 exercise."""

    type: Literal["grounding"]
    op: Literal["next", "previous"]


class Plan(_Message):
    """Adjust this session's plan: a phase's minutes, drop one, or reorder those to come."""

    type: Literal["plan"]
    op: Literal["minutes", "drop", "reorder"]
    index: Annotated[int, Field(ge=0, le=40)] | None = None
    minutes: Annotated[int, Field(ge=1, le=240)] | None = None
    order: Annotated[list[Annotated[int, Field(ge=0, le=40)]], Field(max_length=40)] | None = None


class Help(_Message):
    """The patient's private "I need help": only the clinicians and supervisors see it."""

    type: Literal["help"]
    text: Annotated[str, StringConstraints(max_length=280)] = ""
    # The client's name for this press, echoed in help_received: a client that reconnects
    # before its press was confirmed sends it again and knows which one was confirmed.
    press_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None


class DropStep(_Message):
    """A facilitator logs a step of a dropped-connection prompt as taken or skipped."""

    type: Literal["drop_step"]
    event_id: Annotated[str, StringConstraints(min_length=8, max_length=36, pattern=r"^[\w-]+$")]
    action: Literal["call_back", "backup_phone", "support_person", "welfare_check"]
    outcome: Literal["taken", "skipped"]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class Handout(_Message):
    """Show a handout to everyone (show), turn the shown page (page), or stop showing."""

    type: Literal["handout"]
    op: Literal["show", "page", "stop"]
    handout_id: (
        Annotated[str, StringConstraints(min_length=8, max_length=36, pattern=r"^[\w-]+$")] | None
    ) = None
    version: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    page: Annotated[int, Field(ge=0, le=200)] | None = None


class Start(_Message):
    type: Literal["start"]


class End(_Message):
    type: Literal["end"]


MAX_SDP_CHARS = 60_000
Sdp = Annotated[str, StringConstraints(min_length=10, max_length=MAX_SDP_CHARS)]


class MediaJoin(_Message):
    """Start media, or replace this member's connection after a network change."""

    type: Literal["media_join"]
    restart: bool = False
    receive_video: bool = True


class MediaAnswer(_Message):
    """The client's SDP answer to the server's latest `media_offer`."""

    type: Literal["media_answer"]
    sdp: Sdp


class MediaUpdate(_Message):
    """Start or stop sharing the screen; turn others' video off (audio-only) or on."""

    type: Literal["media_update"]
    screen: bool | None = None
    receive_video: bool | None = None


class MediaLeave(_Message):
    """Stop sending and receiving media (staying in the room)."""

    type: Literal["media_leave"]


class ScreenAllow(_Message):
    """A host lets a participant share their screen, or takes that back."""

    type: Literal["screen_allow"]
    member_id: MemberId
    allowed: bool


class PrivateRoom(_Message):
    """A clinician takes a patient to a private room (open) or brings them back."""

    type: Literal["private_room"]
    member_id: MemberId
    open: bool


BreakoutId = Annotated[str, StringConstraints(pattern=r"^b[0-9]{1,2}$")]


class BreakoutsStart(_Message):
    """Split the admitted patients into breakout rooms with a prompt and a timer."""

    type: Literal["breakouts_start"]
    mode: Literal["hand", "random", "pairs", "triads"]
    rooms: Annotated[int, Field(ge=1, le=20)] | None = None
    assign: (
        Annotated[
            list[Annotated[list[MemberId], Field(max_length=40)]],
            Field(min_length=1, max_length=20),
        ]
        | None
    ) = None
    prompt: Annotated[str, StringConstraints(max_length=500)] = ""
    minutes: Annotated[int, Field(ge=1, le=120)]


class BreakoutMove(_Message):
    """Move one patient to another breakout (`breakout_id` null: the main room)."""

    type: Literal["breakout_move"]
    member_id: MemberId
    breakout_id: BreakoutId | None


class BreakoutVisit(_Message):
    """A staff member goes to a breakout (`breakout_id` null: back to the main room)."""

    type: Literal["breakout_visit"]
    breakout_id: BreakoutId | None


class BreakoutBroadcast(_Message):
    """A message from the facilitators to every breakout and the main room."""

    type: Literal["breakout_broadcast"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class BreakoutsRecall(_Message):
    """Bring everyone back to the main room now."""

    type: Literal["breakouts_recall"]


class FacilitatorCall(_Message):
    """A patient in a breakout asks a facilitator to come ("facilitator please")."""

    type: Literal["facilitator_call"]


BREAKOUT_MESSAGES = (
    BreakoutsStart,
    BreakoutMove,
    BreakoutVisit,
    BreakoutBroadcast,
    BreakoutsRecall,
    FacilitatorCall,
)

MediaMessage = MediaJoin | MediaAnswer | MediaUpdate | MediaLeave | ScreenAllow
MEDIA_MESSAGES = (MediaJoin, MediaAnswer, MediaUpdate, MediaLeave, ScreenAllow)

ClientMessage = Annotated[
    Hello
    | Ping
    | Admit
    | AdmitAll
    | Lock
    | Remove
    | Mute
    | LowerHand
    | RaiseHand
    | React
    | AskUnmute
    | Chat
    | Note
    | Clock
    | Checkin
    | Grounding
    | Plan
    | Help
    | DropStep
    | Start
    | End
    | MediaJoin
    | MediaAnswer
    | MediaUpdate
    | MediaLeave
    | ScreenAllow
    | PrivateRoom
    | BreakoutsStart
    | BreakoutMove
    | BreakoutVisit
    | BreakoutBroadcast
    | BreakoutsRecall
    | FacilitatorCall
    | Handout,
    Field(discriminator="type"),
]
_PARSER: FrameParser[ClientMessage] = FrameParser(ClientMessage, MAX_FRAME_BYTES)
MESSAGE_TYPES = _PARSER.types


def parse(frame: str | bytes) -> ClientMessage:
    """Validate one client frame, or raise `ProtocolError` saying what is wrong."""
    return _PARSER.parse(frame)
