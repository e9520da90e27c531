"""A live room: members connect, every message goes through one dispatch table, and every
change is a sequenced message to the members entitled to it.

`RoomHub` is the facade the server drives. Its parts: the connection set and sequenced
log (connections.py), the session's clock and structure (session_ops.py), the help button
(help_button.py), the private room (private_room.py) and media (media_signaling.py); what
the room reports goes to one injected `RoomEvents`, media and drop steps to injected ports.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from care.handouts import Shelved
from rooms import outbound
from rooms import protocol as p
from rooms.breakout_room import BreakoutRooms
from rooms.clock import SessionClock
from rooms.closecodes import CloseCode
from rooms.connections import LOG_SIZE, Closing, Connections, Entry, Participant
from rooms.events import DropSteps, MediaPort, MemberEvent, RoomEvents
from rooms.handout_view import HandoutView
from rooms.help_button import HelpButton
from rooms.live import Clock, LiveRoom
from rooms.media_signaling import MediaSignaling
from rooms.model import (
    Identity,
    Member,
    Presence,
    Room,
    RoomAction,
    RoomError,
    RoomRole,
    RoomState,
)
from rooms.private_room import PrivateRooms
from rooms.ratelimit import ConnectionLimits, Kind, Limits
from rooms.session_ops import SessionOps

__all__ = ["CHAT_KEPT", "Entry", "Participant", "RoomHub"]

CHAT_KEPT = 500
Handler = Callable[[Member, Any], None]
AsyncHandler = Callable[[Member, Any], Awaitable[None]]


class RoomHub:
    """Runs one room: every change is a sequenced message to the members entitled to it."""

    def __init__(
        self,
        room: Room,
        *,
        clock: Clock,
        events: RoomEvents,
        media: MediaPort | None = None,
        drops: DropSteps | None = None,
        clock_state: SessionClock | None = None,
        float_roster: list[dict[str, str]] | None = None,
        grace_s: float = 30.0,
        log_size: int = LOG_SIZE,
        limits: Limits | None = None,
        chat_kept: int = CHAT_KEPT,
        handouts: list[Shelved] | None = None,
    ) -> None:
        self.room = room
        self._connections = Connections(log_size)
        self._live = LiveRoom(room, self._connections, events, clock)
        self._events = events
        self._clock = clock
        self._grace_s = grace_s
        # Replayed in every snapshot: only the latest messages are kept.
        self._chat: deque[Entry] = deque(maxlen=chat_kept)
        self._limits = ConnectionLimits(limits or Limits())
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._session = SessionOps(self._live, clock_state)
        self._help = HelpButton(self._live, self._limits)
        self._private = PrivateRooms(self._live, self._session, float_roster or [])
        self._breakouts = BreakoutRooms(self._live)
        self.handouts = HandoutView(self._live, handouts or [])
        self._handlers: dict[type[Any], Handler] = {
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
            p.Clock: self._session.on_clock,
            p.Checkin: self._session.on_checkin,
            p.Grounding: self._session.on_grounding,
            p.Plan: self._session.on_plan,
            p.Help: self._help.on_help,
            p.PrivateRoom: self._private.on_private_room,
            p.BreakoutsStart: self._breakouts.on_start,
            p.BreakoutMove: self._breakouts.on_move,
            p.BreakoutVisit: self._breakouts.on_visit,
            p.BreakoutBroadcast: self._breakouts.on_broadcast,
            p.BreakoutsRecall: self._breakouts.on_recall,
            p.FacilitatorCall: self._breakouts.on_call,
            p.Handout: self.handouts.on_handout,
        }
        self._async_handlers: dict[type[Any], AsyncHandler] = {}
        if media is not None:
            signaling = MediaSignaling(self._live, media)
            self._async_handlers |= {
                p.MediaJoin: signaling.on_join,
                p.MediaAnswer: signaling.on_answer,
                p.MediaUpdate: signaling.on_update,
                p.MediaLeave: signaling.on_leave,
                p.ScreenAllow: signaling.on_screen_allow,
            }
        if drops is not None:
            self._async_handlers[p.DropStep] = _drop_step_handler(room, drops)

    @property
    def clock(self) -> SessionClock | None:
        """The session clock (None: the room has no session plan)."""
        return self._session.clock

    @property
    def seq(self) -> int:
        """The last sequence number used."""
        return self._connections.seq

    @property
    def connected(self) -> int:
        """How many members are connected now."""
        return len(self._connections)

    @property
    def ended(self) -> bool:
        """Whether the session has ended."""
        return self.room.state is RoomState.ENDED

    # Publishing ---------------------------------------------------------------------------

    def publish(self, recipients: frozenset[str], payload: dict[str, Any]) -> Entry:
        """Give `payload` the next seq, log it, and send it to the connected recipients."""
        return self._connections.publish(recipients, payload)

    def broadcast(self, recipients: frozenset[str], payload: dict[str, Any]) -> None:
        """Send a passing notice (e.g. who is speaking) without a seq: never replayed."""
        self._connections.broadcast(recipients, payload)

    def staff_ids(self) -> frozenset[str]:
        """The clinicians and supervisors of the room."""
        return self.room.staff_ids()

    def in_room_ids(self) -> frozenset[str]:
        """Members in the room now (admitted, or reconnecting)."""
        return self.room.in_room_ids()

    def snapshot(self, viewer: Member) -> dict[str, Any]:
        """Everything `viewer` may see of the room now, to start or restart from."""
        snap = outbound.snapshot(
            seq=self._connections.seq,
            protocol=p.PROTOCOL_VERSION,
            you=outbound.member_view(viewer, staff=viewer.is_staff),
            room=self.room,
            members=[
                outbound.member_view(m, staff=viewer.is_staff) for m in self.room.visible_to(viewer)
            ],
            clock=self._session.view() if viewer.in_room else None,
            server_time=self._clock().timestamp(),
            chat=[e.payload for e in self._chat if viewer.id in e.recipients],
            breakouts=self._breakouts.view_for(viewer),
        )
        if viewer.in_room:
            snap["handouts"] = self.handouts.shelf_view()
            snap["handout"] = self.handouts.view()
        return snap

    def _send_snapshot(self, member: Member) -> None:
        if member.id in self._connections:
            self._connections.send(member.id, self.snapshot(member))

    # Connections --------------------------------------------------------------------------

    def restore(self, saved: dict[str, Any]) -> None:
        """Take over a room another process ran: members come back as reconnecting, and
        those who do not return within the grace period have left."""
        for member in self.room.restore(saved, self._clock()):
            if member.presence is Presence.RECONNECTING:
                self._start_grace(member.id)

    def _start_grace(self, member_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._timers[member_id] = loop.call_later(self._grace_s, self._expire, member_id)

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
        self._connections.attach(member.id, participant)
        self._limits.fresh(member.id, now.timestamp())
        if known and self._connections.resync(participant, member.id, last_seq):
            you = outbound.member_view(member, staff=member.is_staff)
            participant.send(outbound.resync(self._connections.seq, you))
        else:
            participant.send(self.snapshot(member))
        event = MemberEvent.JOINED if member.in_room else MemberEvent.WAITING
        self._events.presence(member, event, now)
        self._live.publish_member(member)
        return member

    def disconnect(self, participant: Participant) -> None:
        """A connection ended; an admitted member gets the reconnect grace period."""
        member_id = participant.member_id
        if not self._connections.detach(participant):
            return
        self._limits.forget(member_id)
        member = self.room.members.get(member_id)
        if member is None or member.presence in (Presence.REMOVED, Presence.LEFT):
            return
        now = self._clock()
        self.room.disconnect(member_id, now)
        self._events.presence(member, MemberEvent.DISCONNECTED, now)
        self._live.publish_member(member)
        if member.presence is Presence.RECONNECTING:
            self._start_grace(member_id)

    def _expire(self, member_id: str) -> None:
        self._timers.pop(member_id, None)
        now = self._clock()
        member = self.room.expire(member_id, now)
        if member is not None:
            self._events.presence(member, MemberEvent.LEFT, now)
            self._live.publish_member(member)

    def tick(self) -> None:
        """Act on what time has made due (the breakout timer), as of the injected clock."""
        if self.room.state is not RoomState.ENDED:
            self._breakouts.tick()

    def take_closing(self) -> list[Closing]:
        """Connections to close after a connect or disconnect."""
        return self._connections.take_closing()

    def close(self) -> list[Participant]:
        """Cancel timers and hand back every connection for the server to close."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        return self._connections.release()

    # Messages -----------------------------------------------------------------------------

    def _sender(self, participant: Participant) -> Member:
        member = self.room.members.get(participant.member_id)
        if member is None or not self._connections.is_current(participant):
            # A socket the room has let go (it moved to another node, or was replaced).
            raise p.ProtocolError("gone", "this connection is no longer part of the room")
        return member

    def handle(self, participant: Participant, message: Any) -> list[Closing]:
        """Apply one validated message that needs no I/O; return connections to close."""
        member = self._sender(participant)
        handler = self._handlers.get(type(message))
        if handler is None:
            raise p.ProtocolError("unexpected", f"{message.type} is not expected now")
        try:
            handler(member, message)
        except RoomError as exc:
            raise p.ProtocolError(exc.code, exc.reason) from None
        return self._connections.take_closing()

    async def dispatch(self, participant: Participant, message: Any) -> list[Closing]:
        """Apply one validated message (awaiting media and drop steps); return connections
        the server must now close. Refusals raise `ProtocolError`."""
        handler = self._async_handlers.get(type(message))
        if handler is None:
            return self.handle(participant, message)
        member = self._sender(participant)
        try:
            await handler(member, message)
        except RoomError as exc:
            raise p.ProtocolError(exc.code, exc.reason) from None
        return self._connections.take_closing()

    def _allow(self, member: Member, kind: Kind) -> bool:
        """Spend one of this connection's `kind` tokens, or say (once) that it must wait."""
        now = self._clock().timestamp()
        if self._limits.take(member.id, kind, now):
            return True
        if member.id in self._connections:
            wait = self._limits.notice(member.id, kind, now)
            if wait is not None:
                self._connections.send(member.id, outbound.rate_limited(kind, wait))
        return False

    def _on_ping(self, member: Member, message: p.Ping) -> None:
        # No connection: its socket was just replaced or the room moved, nobody to answer.
        self._connections.send(member.id, outbound.pong(message.t, self._clock().timestamp()))

    def _on_admit(self, member: Member, message: p.Admit) -> None:
        admitted = self.room.admit(member, message.member_id, self._clock())
        self._live.publish_member(admitted)
        if admitted.presence is Presence.ADMITTED:
            self._events.presence(admitted, MemberEvent.ADMITTED, self._clock())
            self._send_snapshot(admitted)
            self._session.late_to_checkin()

    def _on_admit_all(self, member: Member, _message: p.AdmitAll) -> None:
        now = self._clock()
        for admitted in self.room.admit_all(member, now):
            self._events.presence(admitted, MemberEvent.ADMITTED, now)
            self._live.publish_member(admitted)
            self._send_snapshot(admitted)
        self._session.late_to_checkin()

    def _on_lock(self, member: Member, message: p.Lock) -> None:
        self.room.set_locked(member, message.locked)
        self._live.publish_room()

    def _on_remove(self, member: Member, message: p.Remove) -> None:
        removed = self.room.remove(member, message.member_id, self._clock())
        self._events.presence(removed, MemberEvent.REMOVED, self._clock())
        self._live.publish_member(removed)
        self._connections.drop(removed.id, CloseCode.REMOVED, "removed by the clinician")

    def _on_mute(self, member: Member, message: p.Mute) -> None:
        if message.audio is None and message.video is None:
            raise RoomError("invalid", "say audio, video or both")
        muted = self.room.block_media(
            member, message.member_id, audio=message.audio, video=message.video
        )
        self._live.publish_member(muted)

    def _on_lower_hand(self, member: Member, message: p.LowerHand) -> None:
        self._live.publish_member(self.room.set_hand(member, message.member_id, False))

    def _on_raise_hand(self, member: Member, message: p.RaiseHand) -> None:
        self._live.publish_member(self.room.set_hand(member, member.id, message.raised))

    def _on_react(self, member: Member, message: p.React) -> None:
        self.room.check(member, RoomAction.REACT)
        if not self._allow(member, Kind.REACT):
            return
        self.publish(self.room.in_room_ids(), outbound.reaction(member, message.reaction))

    def _on_ask_unmute(self, member: Member, _message: p.AskUnmute) -> None:
        self._live.publish_member(self.room.ask_unmute(member))

    def _on_chat(self, member: Member, message: p.Chat) -> None:
        text = message.text.strip()
        if not text:
            raise RoomError("invalid", "the message is empty")
        if not self._allow(member, Kind.CHAT):
            return
        now = self._clock()
        if message.to == "room":
            self.room.check(member, RoomAction.CHAT_ROOM)
            entry = self.publish(self.room.in_room_ids(), outbound.chat_room(member, text, now))
            self._chat.append(entry)
            return
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
        recipients = self.room.staff_ids() | {thread}
        payload = outbound.chat_private(member, text, now, thread)
        self._chat.append(self.publish(recipients, payload))

    def _on_note(self, member: Member, message: p.Note) -> None:
        self.room.check(member, RoomAction.STAFF_NOTE)
        if message.about is not None and message.about not in self.room.members:
            raise RoomError("unknown_member", "no such member in this room")
        if not self._allow(member, Kind.CHAT):
            return
        payload = outbound.note(member, message.about, message.text.strip(), self._clock())
        self._chat.append(self.publish(self.room.staff_ids(), payload))

    def _on_start(self, member: Member, _message: p.Start) -> None:
        self.room.start(member)
        self._live.publish_room()
        self._session.room_started(member)

    def _on_end(self, member: Member, _message: p.End) -> None:
        self.room.end(member)
        now = self._clock()
        self._session.room_ended(member)
        self._live.publish_room()
        for other in list(self.room.members.values()):
            if other.in_room or other.presence is Presence.WAITING:
                self._events.presence(other, MemberEvent.LEFT, now)
        self._connections.drop_all(CloseCode.ENDED, "the session has ended")


def _drop_step_handler(room: Room, drops: DropSteps) -> AsyncHandler:
    async def on_drop_step(member: Member, message: p.DropStep) -> None:
        room.check(member, RoomAction.LOG_DROP_STEP)
        await drops.record(member, message)

    return on_drop_step
