"""The session's structure as run from the room: the clock, check-in round, grounding, plan.

Every change goes through `SessionOps.change`: it applies one clock operation, brings
late arrivals into the check-in round, reports the new state and publishes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from rooms import outbound
from rooms import protocol as p
from rooms.clock import ClockError, ClockStatus, SessionClock
from rooms.live import LiveRoom
from rooms.model import Member, RoomAction, RoomError, RoomRole, RoomState
from rooms.structure import PhaseKind

Change = Callable[[SessionClock, dt.datetime], None]
GROUNDING_STEPS = 4  # 5-4-3-2-1: steps 0..4


class SessionOps:
    """Runs a room's session clock (None: the room has no session plan)."""

    def __init__(self, live: LiveRoom, clock: SessionClock | None) -> None:
        self._live = live
        self.clock = clock

    def view(self) -> dict[str, Any] | None:
        """The clock's state as of now, for a snapshot or a `clock` message."""
        return None if self.clock is None else self.clock.view(self._live.now())

    def _publish(self) -> None:
        self._live.connections.publish(
            self._live.everyone(), outbound.clock(self.view(), self._live.now().timestamp())
        )

    def _require(self) -> SessionClock:
        if self.clock is None:
            raise RoomError("no_clock", "this room has no session plan")
        return self.clock

    def change(self, member: Member | None, op: str, change: Change) -> None:
        """Apply one operation, report it and publish the new state."""
        clock = self._require()
        try:
            change(clock, self._live.now())
        except ClockError as exc:
            raise RoomError(exc.code, exc.reason) from None
        self._fill_checkin()
        self._live.events.clock_changed(clock, op, member)
        self._publish()

    def _fill_checkin(self) -> None:
        """In the check-in round, everyone admitted is in the queue; late arrivals at its end."""
        clock = self.clock
        if clock is None or clock.checkin is None or clock.phase.kind != PhaseKind.CHECKIN_ROUND:
            return
        if clock.status is not ClockStatus.RUNNING and clock.checkin.turn_started_at is None:
            return
        now = self._live.now()
        admitted = sorted(
            (m for m in self._live.room.in_room() if m.role is RoomRole.PARTICIPANT),
            key=lambda m: m.since,
        )
        for member in admitted:
            clock.checkin.add_late(member.id, now)

    def late_to_checkin(self) -> None:
        """Someone was admitted: during the check-in round they join its queue."""
        clock = self.clock
        if (
            clock is not None
            and clock.checkin is not None
            and clock.phase.kind == PhaseKind.CHECKIN_ROUND
        ):
            before = clock.checkin.to_json()
            self._fill_checkin()
            if clock.checkin.to_json() != before:
                self._live.events.clock_changed(clock, "checkin_late_arrival", None)
                self._publish()

    # The session starts and ends with the room -------------------------------------------

    def room_started(self, member: Member) -> None:
        """The session went live: the clock starts if it has not."""
        if self.clock is not None and self.clock.status is ClockStatus.NOT_STARTED:
            self.change(member, "start", lambda clock, now: clock.start(now))

    def room_ended(self, member: Member) -> None:
        """The session ended: so does the clock."""
        if self.clock is not None and self.clock.status is not ClockStatus.ENDED:
            self.change(member, "end", lambda clock, at: clock.end(at))

    def hand_off(self, to: RoomRole, *, pause: bool) -> None:
        """The crisis path's hook: the co-host takes the clock, or it pauses."""
        clock = self._require()
        try:
            clock.hand_off(to.value, self._live.now(), pause=pause)
        except ClockError as exc:
            raise RoomError(exc.code, exc.reason) from None
        self._live.events.clock_changed(clock, "hand_off", None)
        self._publish()

    # Messages -----------------------------------------------------------------------------

    def on_clock(self, member: Member, message: p.Clock) -> None:
        """Run the clock (host and co-host)."""
        room = self._live.room
        room.check(member, RoomAction.RUN_CLOCK)
        op = message.op
        if op == "extend":
            minutes = message.minutes
            if minutes is None:
                raise RoomError("invalid", "say how many minutes")
            self.change(member, op, lambda clock, _now: clock.extend(minutes))
        elif op == "jump":
            index = message.index
            if index is None:
                raise RoomError("invalid", "say which phase")
            self.change(member, op, lambda clock, now: clock.jump(index, now))
        elif op == "hand_off":
            to = message.to
            if to is None:
                raise RoomError("invalid", "say who holds the clock")
            pause = bool(message.pause)
            self.change(member, op, lambda clock, now: clock.hand_off(to, now, pause=pause))
        else:
            self.change(member, op, lambda clock, now: getattr(clock, op)(now))
        if op == "start" and room.state is RoomState.OPEN:
            room.start(member)
            self._live.publish_room()

    def on_checkin(self, member: Member, message: p.Checkin) -> None:
        """Run the check-in round; a speaker may end or pass their own turn."""
        clock = self._require()
        checkin = clock.checkin
        if checkin is None or clock.phase.kind != PhaseKind.CHECKIN_ROUND:
            raise RoomError("no_checkin", "the check-in round is not on")
        # A speaker ends or passes their own turn; naming anyone else is moderation.
        own_turn = (
            checkin.current == member.id
            and message.op in ("next", "pass")
            and message.member_id in (None, member.id)
        )
        if not own_turn:
            self._live.room.check(member, RoomAction.RUN_CLOCK)
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

        self.change(member, f"checkin_{message.op}", change)

    def on_grounding(self, member: Member, message: p.Grounding) -> None:
        """Pace the grounding exercise one step on or back."""
        self._live.room.check(member, RoomAction.RUN_CLOCK)
        step = 1 if message.op == "next" else -1

        def change(clock: SessionClock, _now: dt.datetime) -> None:
            if clock.phase.kind != PhaseKind.GROUNDING:
                raise ClockError("no_grounding", "the grounding exercise is not on")
            clock.grounding_step = max(0, min(GROUNDING_STEPS, clock.grounding_step + step))

        self.change(member, f"grounding_{message.op}", change)

    def on_plan(self, member: Member, message: p.Plan) -> None:
        """Edit this session's plan: a phase's minutes, drop one, reorder those to come."""
        self._live.room.check(member, RoomAction.RUN_CLOCK)
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

        self.change(member, f"plan_{message.op}", change)
