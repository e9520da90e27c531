"""A live room: its connections, the sequenced message log, chat, and the message handlers."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rooms import protocol as p
from rooms.clock import ClockError, SessionClock
from rooms.closecodes import CloseCode
from rooms.model import (
    PERMISSIONS,
    Identity,
    Member,
    Presence,
    Room,
    RoomAction,
    RoomError,
    RoomRole,
    RoomState,
)
from rooms.ratelimit import Limits, TokenBucket

LOG_SIZE = 1000
CHAT_KEPT = 500
# Different texts kept from presses folded into one write (the count is always kept).
FOLD_TEXTS = 20


class Participant(Protocol):
    """One connection as the room sees it (the server adapts a WebSocket to this)."""

    member_id: str

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a message; a connection that cannot keep up closes itself (False)."""

    async def close(self, code: int, reason: str) -> None:
        """Close the connection."""


Recorder = Callable[[Member, str, dt.datetime], None]
StateRecorder = Callable[[RoomState], None]
ClockRecorder = Callable[[SessionClock, str, Member | None], None]


class HelpRecorder(Protocol):
    """Raise a help press as a concern; `stored` is called once it is committed.

    The patient is told "your clinician has been told" only when that is true even if
    this node dies now. `repeat` > 0: that many presses past the help rate, to be added to
    the patient's open event as one step without paging anyone again.
    """

    def __call__(
        self,
        member: Member,
        text: str,
        at: dt.datetime,
        stored: Callable[[], None],
        *,
        repeat: int = 0,
    ) -> None: ...


PrivateRecorder = Callable[[Member, Member, dt.datetime], None]  # patient, clinician, when
Clock = Callable[[], dt.datetime]


@dataclass(frozen=True, slots=True)
class Entry:
    """A sequenced server message and who was entitled to it when it was sent."""

    seq: int
    recipients: frozenset[str]
    payload: dict[str, Any]


@dataclass(slots=True)
class _Fold:
    """Help presses past the rate: at most one write in flight, the rest wait for it."""

    writing: bool = False
    presses: int = 0
    texts: list[str] = field(default_factory=list)
    confirmations: list[dict[str, Any]] = field(default_factory=list)

    def add(self, text: str, confirmation: dict[str, Any]) -> None:
        self.presses += 1
        if text and text not in self.texts and len(self.texts) < FOLD_TEXTS:
            self.texts.append(text)
        self.confirmations.append(confirmation)

    def take(self) -> tuple[int, str, list[dict[str, Any]]]:
        taken = (self.presses, "\n".join(self.texts), self.confirmations)
        self.presses, self.texts, self.confirmations = 0, [], []
        return taken


def member_view(member: Member, *, staff: bool = False) -> dict[str, Any]:
    """How a member is described on the wire (staff also get `staff_info`)."""
    view: dict[str, Any] = {
        "id": member.id,
        "name": member.name,
        "role": member.role.value,
        "presence": member.presence.value,
        "since": member.since.isoformat(),
        "hand_raised": member.hand_raised,
        "audio_blocked": member.audio_blocked,
        "video_blocked": member.video_blocked,
        "unmute_requested": member.unmute_requested,
        "away": member.space is not None,
        "space": member.space,
    }
    if staff:
        view["staff_info"] = member.staff_info
    return view


class RoomHub:
    """Runs one room: every change is a sequenced message to the members entitled to it."""

    def __init__(
        self,
        room: Room,
        *,
        clock: Clock,
        record: Recorder,
        grace_s: float = 30.0,
        log_size: int = LOG_SIZE,
        record_state: StateRecorder | None = None,
        clock_state: SessionClock | None = None,
        record_clock: ClockRecorder | None = None,
        record_help: HelpRecorder | None = None,
        on_member: Callable[[Member], None] | None = None,
        record_private: PrivateRecorder | None = None,
        record_room: Callable[[dict[str, Any]], None] | None = None,
        float_roster: list[dict[str, str]] | None = None,
        limits: Limits | None = None,
        chat_kept: int = CHAT_KEPT,
    ) -> None:
        self.room = room
        self.clock = clock_state
        self._record_clock = record_clock
        self._record_help = record_help
        self._on_member = on_member
        self._record_private = record_private
        self._record_room = record_room
        self._float_roster = float_roster or []
        self._clock = clock
        self._record = record
        self._record_state = record_state
        self._grace_s = grace_s
        self._connections: dict[str, Participant] = {}
        self._log: deque[Entry] = deque(maxlen=log_size)
        # Replayed in every snapshot: only the latest messages are kept.
        self._chat: deque[Entry] = deque(maxlen=chat_kept)
        self._limits = limits or Limits()
        self._buckets: dict[str, dict[str, TokenBucket]] = {}
        self._told: set[tuple[str, str]] = set()
        self._folds: dict[str, _Fold] = {}
        self._seq = 0
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._handlers: dict[type[Any], Callable[[Member, Any], None]] = {
            p.Ping: self._on_ping,
            p.Admit: self._on_admit,
            p.AdmitAll: self._on_admit_all,
            p.Lock: self._on_lock,
            p.Remove: self._on_remove,
            p.Mute: self._on_mute,
            p.LowerHand: self._on_lower_hand,
            p.RaiseHand: self._on_raise_hand,
            p.React: self._on_react,
            p.AskUnmute: self._on_ask_unmute,
            p.Chat: self._on_chat,
            p.Note: self._on_note,
            p.Start: self._on_start,
            p.End: self._on_end,
            p.Clock: self._on_clock,
            p.Checkin: self._on_checkin,
            p.Grounding: self._on_grounding,
            p.Plan: self._on_plan,
            p.Help: self._on_help,
            p.PrivateRoom: self._on_private_room,
        }
        self._closing: list[tuple[Participant, int, str]] = []

    @property
    def seq(self) -> int:
        """The last sequence number used."""
        return self._seq

    @property
    def connected(self) -> int:
        """How many members are connected now."""
        return len(self._connections)

    # Publishing ---------------------------------------------------------------------------

    def _audience(self, kind: str, extra: Iterable[str] = ()) -> frozenset[str]:
        members = self.room.members.values()
        if kind == "in_room":
            ids = {m.id for m in members if m.in_room}
        elif kind == "staff":
            ids = {m.id for m in members if m.is_staff}
        else:
            ids = set()
        return frozenset(ids | set(extra))

    def publish(self, recipients: frozenset[str], payload: dict[str, Any]) -> Entry:
        """Give `payload` the next seq, log it, and send it to the connected recipients."""
        self._seq += 1
        entry = Entry(self._seq, recipients, {**payload, "seq": self._seq})
        self._log.append(entry)
        for member_id in recipients:
            connection = self._connections.get(member_id)
            if connection is not None:
                self._deliver(connection, entry.payload)
        return entry

    def _deliver(self, connection: Participant, payload: dict[str, Any]) -> None:
        # A connection whose outbox is full closes itself; the client resyncs on reconnect.
        connection.send(payload)

    def broadcast(self, recipients: frozenset[str], payload: dict[str, Any]) -> None:
        """Send a passing notice (e.g. who is speaking) without a seq: never replayed."""
        for member_id in recipients:
            connection = self._connections.get(member_id)
            if connection is not None:
                self._deliver(connection, payload)

    def staff_ids(self) -> frozenset[str]:
        """The clinicians and supervisors of the room."""
        return self._audience("staff")

    def in_room_ids(self) -> frozenset[str]:
        """Members in the room now (admitted, or reconnecting)."""
        return self._audience("in_room")

    def restore(self, saved: dict[str, Any]) -> None:
        """Take over a room another process ran: members come back as reconnecting, and
        those who do not return within the grace period have left."""
        loop = asyncio.get_running_loop()
        for member in self.room.restore(saved, self._clock()):
            if member.presence is Presence.RECONNECTING:
                self._timers[member.id] = loop.call_later(self._grace_s, self._expire, member.id)

    def _publish_member(self, member: Member) -> None:
        if self._on_member is not None:
            self._on_member(member)
        if self._record_room is not None:
            self._record_room(self.room.persisted())
        staff = self._audience("staff")
        full = {"type": "member", "member": member_view(member, staff=True)}
        view = member_view(member)
        self.publish(staff, full)
        if not member.visible_to_patients or member.presence is Presence.WAITING:
            others: frozenset[str] = frozenset()
        else:
            others = self._audience("in_room") - staff
        if member.presence is Presence.REMOVED:
            # Other patients see someone leave; only staff and the person know why.
            others -= {member.id}
            self.publish(
                others, {"type": "member", "member": {**view, "presence": Presence.LEFT.value}}
            )
            others = frozenset()
        if not member.is_staff:
            others |= {member.id}
        if others:
            self.publish(others, {"type": "member", "member": view})

    def _publish_room(self) -> None:
        if self._record_state is not None:
            self._record_state(self.room.state)
        if self._record_room is not None:
            self._record_room(self.room.persisted())
        self.publish(
            self._audience("in_room") | self._audience("staff"),
            {"type": "room", "state": self.room.state.value, "locked": self.room.locked},
        )

    # Connections --------------------------------------------------------------------------

    def connect(
        self,
        participant: Participant,
        identity: Identity,
        role: RoomRole,
        name: str,
        last_seq: int | None,
        staff_info: dict[str, Any] | None = None,
    ) -> Member:
        """A member's connection said hello: arrive, then resync or send a snapshot."""
        now = self._clock()
        known = identity.key in self.room.members
        member = self.room.arrive(identity, role, name, now)
        if staff_info is not None:
            member.staff_info = staff_info
        timer = self._timers.pop(member.id, None)
        if timer is not None:
            timer.cancel()
        previous = self._connections.get(member.id)
        if previous is not None and previous is not participant:
            self._closing.append((previous, CloseCode.REPLACED, "opened on another device"))
        self._connections[member.id] = participant
        self._fresh_buckets(member.id)
        oldest = self._log[0].seq if self._log else self._seq + 1
        if known and last_seq is not None and last_seq >= oldest - 1 and last_seq <= self._seq:
            for entry in self._log:
                if entry.seq > last_seq and member.id in entry.recipients:
                    participant.send(entry.payload)
            you = member_view(member, staff=member.is_staff)
            participant.send({"type": "resync", "seq": self._seq, "you": you})
        else:
            participant.send(self.snapshot(member))
        self._record(member, "joined" if member.in_room else "waiting", now)
        self._publish_member(member)
        return member

    def disconnect(self, participant: Participant) -> None:
        """A connection ended; an admitted member gets the reconnect grace period."""
        member_id = participant.member_id
        if self._connections.get(member_id) is not participant:
            return
        del self._connections[member_id]
        self._buckets.pop(member_id, None)
        member = self.room.members.get(member_id)
        if member is None or member.presence in (Presence.REMOVED, Presence.LEFT):
            return
        now = self._clock()
        self.room.disconnect(member_id, now)
        self._record(member, "disconnected", now)
        self._publish_member(member)
        if member.presence is Presence.RECONNECTING:
            loop = asyncio.get_running_loop()
            self._timers[member_id] = loop.call_later(self._grace_s, self._expire, member_id)

    def _expire(self, member_id: str) -> None:
        self._timers.pop(member_id, None)
        now = self._clock()
        member = self.room.expire(member_id, now)
        if member is not None:
            self._record(member, "left", now)
            self._publish_member(member)

    def snapshot(self, viewer: Member) -> dict[str, Any]:
        """Everything `viewer` may see of the room now, to start or restart from."""
        return {
            "type": "snapshot",
            "seq": self._seq,
            "protocol": p.PROTOCOL_VERSION,
            "you": member_view(viewer, staff=viewer.is_staff),
            "room": {
                "id": self.room.id,
                "title": self.room.title,
                "kind": self.room.kind,
                "starts_at": self.room.starts_at.isoformat(),
                "state": self.room.state.value,
                "locked": self.room.locked,
            },
            "members": [
                member_view(m, staff=viewer.is_staff) for m in self.room.visible_to(viewer)
            ],
            "clock": self._clock_view() if viewer.in_room else None,
            "server_time": self._clock().timestamp(),
            "chat": [e.payload for e in self._chat if viewer.id in e.recipients],
        }

    # Rate limits --------------------------------------------------------------------------

    def _fresh_buckets(self, member_id: str) -> None:
        now = self._clock().timestamp()
        self._buckets[member_id] = {
            "help": TokenBucket.full(self._limits.help, now),
            "chat": TokenBucket.full(self._limits.chat, now),
            "react": TokenBucket.full(self._limits.react, now),
        }
        self._told = {told for told in self._told if told[0] != member_id}

    def _allow(self, member: Member, kind: str) -> bool:
        """Spend one of this connection's `kind` tokens, or say (once) that it must wait."""
        bucket = self._buckets.get(member.id, {}).get(kind)
        if bucket is None:
            return True
        now = self._clock().timestamp()
        if bucket.take(now):
            self._told.discard((member.id, kind))
            return True
        connection = self._connections.get(member.id)
        if connection is not None and (member.id, kind) not in self._told:
            # One notice per pause, not one per refused frame: a flooding client's own
            # outbox must not fill with refusals either.
            self._told.add((member.id, kind))
            connection.send(
                {
                    "type": "error",
                    "code": "rate_limited",
                    "kind": kind,
                    "reason": "too many messages: wait a moment and send again",
                    "retry_after_s": round(bucket.wait_s(now), 1),
                }
            )
        return False

    # Messages -----------------------------------------------------------------------------

    def handle(self, participant: Participant, message: Any) -> list[tuple[Participant, int, str]]:
        """Apply one validated message; return connections the server must now close."""
        member = self.room.members.get(participant.member_id)
        if member is None or self._connections.get(participant.member_id) is not participant:
            # A socket the room has let go (it moved to another node, or was replaced).
            raise p.ProtocolError("gone", "this connection is no longer part of the room")
        handler = self._handlers.get(type(message))
        if handler is None:
            raise p.ProtocolError("unexpected", f"{message.type} is not expected now")
        try:
            handler(member, message)
        except RoomError as exc:
            raise p.ProtocolError(exc.code, exc.reason) from None
        closing, self._closing = self._closing, []
        return closing

    def take_closing(self) -> list[tuple[Participant, int, str]]:
        """Connections to close after a connect or disconnect."""
        closing, self._closing = self._closing, []
        return closing

    def _on_ping(self, member: Member, message: p.Ping) -> None:
        connection = self._connections.get(member.id)
        if connection is None:
            return  # its socket was just replaced or the room moved: nobody to answer
        connection.send({"type": "pong", "t": message.t, "server_time": self._clock().timestamp()})

    def _on_admit(self, member: Member, message: p.Admit) -> None:
        admitted = self.room.admit(member, message.member_id, self._clock())
        self._publish_member(admitted)
        if admitted.presence is Presence.ADMITTED:
            self._record(admitted, "admitted", self._clock())
            self._send_snapshot(admitted)
            self._late_to_checkin()

    def _late_to_checkin(self) -> None:
        clock = self.clock
        if clock is not None and clock.checkin is not None and clock.phase.kind == "checkin_round":
            before = clock.checkin.to_json()
            self._fill_checkin()
            if clock.checkin.to_json() != before:
                if self._record_clock is not None:
                    self._record_clock(clock, "checkin_late_arrival", None)
                self._publish_clock()

    def _on_admit_all(self, member: Member, _message: p.AdmitAll) -> None:
        now = self._clock()
        for admitted in self.room.admit_all(member, now):
            self._record(admitted, "admitted", now)
            self._publish_member(admitted)
            self._send_snapshot(admitted)
        self._late_to_checkin()

    def _send_snapshot(self, member: Member) -> None:
        connection = self._connections.get(member.id)
        if connection is not None:
            self._deliver(connection, self.snapshot(member))

    def _on_lock(self, member: Member, message: p.Lock) -> None:
        self.room.set_locked(member, message.locked)
        self._publish_room()

    def _on_remove(self, member: Member, message: p.Remove) -> None:
        removed = self.room.remove(member, message.member_id, self._clock())
        self._record(removed, "removed", self._clock())
        self._publish_member(removed)
        connection = self._connections.pop(removed.id, None)
        if connection is not None:
            self._closing.append((connection, CloseCode.REMOVED, "removed by the clinician"))

    def _on_mute(self, member: Member, message: p.Mute) -> None:
        if message.audio is None and message.video is None:
            raise RoomError("invalid", "say audio, video or both")
        muted = self.room.block_media(
            member, message.member_id, audio=message.audio, video=message.video
        )
        self._publish_member(muted)

    def _on_lower_hand(self, member: Member, message: p.LowerHand) -> None:
        self._publish_member(self.room.set_hand(member, message.member_id, False))

    def _on_raise_hand(self, member: Member, message: p.RaiseHand) -> None:
        self._publish_member(self.room.set_hand(member, member.id, message.raised))

    def _on_react(self, member: Member, message: p.React) -> None:
        self.room.check(member, RoomAction.REACT)
        if not self._allow(member, "react"):
            return
        self.publish(
            self._audience("in_room"),
            {"type": "reaction", "from": member.id, "reaction": message.reaction},
        )

    def _on_ask_unmute(self, member: Member, _message: p.AskUnmute) -> None:
        self._publish_member(self.room.ask_unmute(member))

    def _on_chat(self, member: Member, message: p.Chat) -> None:
        text = message.text.strip()
        if not text:
            raise RoomError("invalid", "the message is empty")
        if not self._allow(member, "chat"):
            return
        base = {
            "type": "chat",
            "from": member.id,
            "from_name": member.name,
            "text": text,
            "at": self._clock().isoformat(),
        }
        if message.to == "room":
            self.room.check(member, RoomAction.CHAT_ROOM)
            recipients = self._audience("in_room")
            payload = {**base, "channel": "room"}
        else:
            self.room.check(member, RoomAction.CHAT_PRIVATE)
            if member.is_staff:
                patient = self.room.members.get(message.to)
                if patient is None or patient.is_staff:
                    raise RoomError("unknown_member", "private replies go to a patient")
                thread = patient.id
            elif message.to == "staff":
                thread = member.id
            else:
                raise RoomError("forbidden", "patients write privately to the clinicians only")
            recipients = self._audience("staff", [thread])
            payload = {**base, "channel": "private", "thread": thread}
        self._chat.append(self.publish(recipients, payload))

    def _on_note(self, member: Member, message: p.Note) -> None:
        self.room.check(member, RoomAction.STAFF_NOTE)
        if message.about is not None and message.about not in self.room.members:
            raise RoomError("unknown_member", "no such member in this room")
        if not self._allow(member, "chat"):
            return
        payload = {
            "type": "chat",
            "channel": "note",
            "from": member.id,
            "from_name": member.name,
            "about": message.about,
            "text": message.text.strip(),
            "at": self._clock().isoformat(),
        }
        self._chat.append(self.publish(self._audience("staff"), payload))

    def _on_help(self, member: Member, message: p.Help) -> None:
        # Waiting patients may ask for help too: the button must never be out of reach.
        if RoomAction.ASK_HELP not in PERMISSIONS[member.role]:
            raise RoomError("forbidden", "only patients use the help button")
        now = self._clock()
        text = message.text.strip()
        confirmation: dict[str, Any] = {"type": "help_received", "at": now.isoformat()}
        if message.press_id is not None:
            confirmation["press_id"] = message.press_id
        if not self._allow_help(member):
            # Past the rate, a press is never dropped: it becomes a step on the open event
            # (no new page, no alert in the room), confirmed like any other once stored.
            fold = self._folds.setdefault(member.id, _Fold())
            fold.add(text, confirmation)
            if not fold.writing:
                self._write_fold(member, fold)
            return
        self.publish(
            self._audience("staff"),
            {
                "type": "help",
                "from": member.id,
                "name": member.name,
                "text": text,
                "at": now.isoformat(),
            },
        )

        def stored() -> None:
            self.publish(frozenset({member.id}), confirmation)

        if self._record_help is None:
            stored()  # nothing durable behind this room (tests of the room alone)
        else:
            self._record_help(member, text, now, stored)

    def _allow_help(self, member: Member) -> bool:
        bucket = self._buckets.get(member.id, {}).get("help")
        return bucket is None or bucket.take(self._clock().timestamp())

    def _write_fold(self, member: Member, fold: _Fold) -> None:
        presses, text, confirmations = fold.take()
        fold.writing = True

        def stored() -> None:
            for confirmation in confirmations:
                self.publish(frozenset({member.id}), confirmation)
            fold.writing = False
            if fold.presses:
                self._write_fold(member, fold)
            elif self._folds.get(member.id) is fold:
                del self._folds[member.id]

        if self._record_help is None:
            stored()
        else:
            self._record_help(member, text, self._clock(), stored, repeat=presses)

    def _on_start(self, member: Member, _message: p.Start) -> None:
        self.room.start(member)
        self._publish_room()
        if self.clock is not None and self.clock.status == "not_started":
            self._clock_op(member, "start", lambda clock, now: clock.start(now))

    def _on_end(self, member: Member, _message: p.End) -> None:
        self.room.end(member)
        now = self._clock()
        if self.clock is not None and self.clock.status != "ended":
            self._clock_op(member, "end", lambda clock, at: clock.end(at))
        self._publish_room()
        for other in list(self.room.members.values()):
            if other.in_room or other.presence is Presence.WAITING:
                self._record(other, "left", now)
        for connection in self._connections.values():
            self._closing.append((connection, CloseCode.ENDED, "the session has ended"))
        self._connections.clear()

    # The session clock ------------------------------------------------------------------

    def _clock_view(self) -> dict[str, Any] | None:
        return None if self.clock is None else self.clock.view(self._clock())

    def _publish_clock(self) -> None:
        self.publish(
            self._audience("in_room") | self._audience("staff"),
            {
                "type": "clock",
                "clock": self._clock_view(),
                "server_time": self._clock().timestamp(),
            },
        )

    def _require_clock(self) -> SessionClock:
        if self.clock is None:
            raise RoomError("no_clock", "this room has no session plan")
        return self.clock

    def _clock_op(
        self, member: Member, op: str, change: Callable[[SessionClock, dt.datetime], None]
    ) -> None:
        clock = self._require_clock()
        try:
            change(clock, self._clock())
        except ClockError as exc:
            raise RoomError(exc.code, exc.reason) from None
        self._fill_checkin()
        if self._record_clock is not None:
            self._record_clock(clock, op, member)
        self._publish_clock()

    def _fill_checkin(self) -> None:
        """In the check-in round, everyone admitted is in the queue; late arrivals at its end."""
        clock = self.clock
        if clock is None or clock.checkin is None or clock.phase.kind != "checkin_round":
            return
        if clock.status != "running" and clock.checkin.turn_started_at is None:
            return
        now = self._clock()
        admitted = sorted(
            (m for m in self.room.in_room() if m.role is RoomRole.PARTICIPANT),
            key=lambda m: m.since,
        )
        for member in admitted:
            clock.checkin.add_late(member.id, now)

    def _on_clock(self, member: Member, message: p.Clock) -> None:
        self.room.check(member, RoomAction.RUN_CLOCK)
        op = message.op
        if op == "extend":
            minutes = message.minutes
            if minutes is None:
                raise RoomError("invalid", "say how many minutes")
            self._clock_op(member, op, lambda clock, _now: clock.extend(minutes))
        elif op == "jump":
            index = message.index
            if index is None:
                raise RoomError("invalid", "say which phase")
            self._clock_op(member, op, lambda clock, now: clock.jump(index, now))
        elif op == "hand_off":
            to = message.to
            if to is None:
                raise RoomError("invalid", "say who holds the clock")
            pause = bool(message.pause)
            self._clock_op(member, op, lambda clock, now: clock.hand_off(to, now, pause=pause))
        else:
            self._clock_op(member, op, lambda clock, now: getattr(clock, op)(now))
        if op == "start" and self.room.state is RoomState.OPEN:
            self.room.start(member)
            self._publish_room()

    def _on_checkin(self, member: Member, message: p.Checkin) -> None:
        clock = self._require_clock()
        checkin = clock.checkin
        if checkin is None or clock.phase.kind != "checkin_round":
            raise RoomError("no_checkin", "the check-in round is not on")
        # A speaker ends or passes their own turn; naming anyone else is moderation.
        own_turn = (
            checkin.current == member.id
            and message.op in ("next", "pass")
            and message.member_id in (None, member.id)
        )
        if not own_turn:
            self.room.check(member, RoomAction.RUN_CLOCK)
        target = message.member_id or member.id

        def change(_clock: SessionClock, now: dt.datetime) -> None:
            if message.op == "next":
                checkin.next(now)
            elif message.op == "pass":
                checkin.pass_turn(target, now)
            elif message.op == "skip":
                checkin.skip(target, now)
            elif message.op == "to_end":
                checkin.to_end(target, now)
            else:
                checkin.reorder(list(message.order or []))

        self._clock_op(member, f"checkin_{message.op}", change)

    def _on_grounding(self, member: Member, message: p.Grounding) -> None:
        self.room.check(member, RoomAction.RUN_CLOCK)
        step = 1 if message.op == "next" else -1

        def change(clock: SessionClock, _now: dt.datetime) -> None:
            if clock.phase.kind != "grounding":
                raise ClockError("no_grounding", "the grounding exercise is not on")
            clock.grounding_step = max(0, min(4, clock.grounding_step + step))

        self._clock_op(member, f"grounding_{message.op}", change)

    def _on_plan(self, member: Member, message: p.Plan) -> None:
        self.room.check(member, RoomAction.RUN_CLOCK)
        index, minutes, order = message.index, message.minutes, message.order

        def change(clock: SessionClock, _now: dt.datetime) -> None:
            if message.op == "reorder":
                clock.reorder(list(order or []))
            elif index is None:
                raise ClockError("invalid", "say which phase")
            elif message.op == "drop":
                clock.drop(index)
            elif minutes is None:
                raise ClockError("invalid", "say how many minutes")
            else:
                clock.set_minutes(index, minutes)

        self._clock_op(member, f"plan_{message.op}", change)

    # Private room (the crisis path) --------------------------------------------------------

    def _on_private_room(self, member: Member, message: p.PrivateRoom) -> None:
        self.room.check(member, RoomAction.PRIVATE_ROOM)
        patient = self.room.members.get(message.member_id)
        if patient is None or patient.is_staff or not patient.in_room:
            raise RoomError("invalid", "choose a patient who is in the room")
        now = self._clock()
        if not message.open:
            space = patient.space
            if space is None:
                raise RoomError("invalid", "this patient is not in a private room")
            for other in self.room.members.values():
                if other.space == space:
                    other.space = None
                    self._publish_member(other)
            self.publish(
                self._audience("in_room") | self._audience("staff"),
                {"type": "private_room", "open": False, "member_id": patient.id},
            )
            return
        if patient.space is not None or member.space is not None:
            raise RoomError("busy", "already in a private room")
        space = f"side-{secrets.token_hex(6)}"
        patient.space = member.space = space
        # The co-facilitator keeps the group: the clock goes to them, or pauses for a break.
        keeper = next(
            (
                m
                for m in self.room.members.values()
                if m.role in (RoomRole.HOST, RoomRole.COHOST)
                and m is not member
                and m.space is None
                and m.id in self._connections
            ),
            None,
        )
        if self.clock is not None and self.clock.status != "not_started":
            holder = keeper.role.value if keeper is not None else member.role.value
            self.hand_off_clock(holder, pause=keeper is None)
        self._publish_member(patient)
        self._publish_member(member)
        if not member.visible_to_patients:
            # A supervisor watching unseen becomes visible to this one patient only.
            self.publish(frozenset({patient.id}), {"type": "member", "member": member_view(member)})
        group = frozenset(m.id for m in self.room.in_room() if m.space is None)
        self.publish(
            group,
            {
                "type": "private_room",
                "open": True,
                "member_id": patient.id,
                "keeper": keeper.id if keeper is not None else None,
                "short_break": keeper is None,
            },
        )
        self.publish(
            frozenset({patient.id, member.id}),
            {
                "type": "private_room",
                "open": True,
                "member_id": patient.id,
                "with": member.id,
                "with_name": member.name,
                "mine": True,
            },
        )
        if keeper is None:
            self.publish(
                self._audience("staff"),
                {"type": "float_needed", "member_id": patient.id, "roster": self._float_roster},
            )
        if self._record_private is not None:
            self._record_private(patient, member, now)

    def hand_off_clock(self, to: str, *, pause: bool) -> None:
        """The crisis path's hook: the co-host takes the clock, or it pauses."""
        clock = self._require_clock()
        try:
            clock.hand_off(to, self._clock(), pause=pause)
        except ClockError as exc:
            raise RoomError(exc.code, exc.reason) from None
        if self._record_clock is not None:
            self._record_clock(clock, "hand_off", None)
        self._publish_clock()

    # Shutdown -----------------------------------------------------------------------------

    def close(self) -> list[Participant]:
        """Cancel timers and hand back every connection for the server to close."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        connections = list(self._connections.values())
        self._connections.clear()
        return connections

    @property
    def ended(self) -> bool:
        return self.room.state is RoomState.ENDED
