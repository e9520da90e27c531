"""Breakout practice rooms as run from the room: split, move, visit, broadcast, recall.

Nobody's connection changes: moving someone only changes which space their media belongs
to (`Room.media_space`), so the SFU re-gates their legs. Presence is untouched, so
attendance keeps counting, and the help button and every crisis trigger work as in the
main room. The timer is checked by `tick`, driven by the server with the injected clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from rooms import outbound
from rooms import protocol as p
from rooms.breakouts import BreakoutError, Breakouts, SplitMode, split
from rooms.live import LiveRoom
from rooms.model import Member, RoomAction, RoomError, RoomRole


class BreakoutRooms:
    """Runs the breakout rooms of one room."""

    def __init__(self, live: LiveRoom, rng: random.Random | None = None) -> None:
        self._live = live
        self._rng = rng or random.SystemRandom()

    # Views --------------------------------------------------------------------------------

    def view_for(self, viewer: Member) -> dict[str, object] | None:
        """What `viewer` may see of the breakouts now (None: none running, or waiting)."""
        breakouts = self._live.room.breakouts
        if breakouts is None or not viewer.in_room:
            return None
        now = self._live.now()
        if viewer.is_staff:
            return breakouts.view(now)
        return breakouts.view(now, viewer=viewer.id, hidden=self._hidden())

    def room_chat(self, sender: Member, text: str) -> tuple[frozenset[str], outbound.Payload]:
        """Who a `to: "room"` chat reaches, and the message: while breakouts are open, the
        sender's own breakout (or the main room) plus every staff member in the room, with
        `breakout` saying where it was said (null: the main room)."""
        room = self._live.room
        payload = outbound.chat_room(sender, text, self._live.now())
        breakouts = room.breakouts
        if breakouts is None:
            return room.in_room_ids(), payload
        where = breakouts.room_of(sender.id)
        recipients = frozenset(
            m.id for m in room.in_room() if m.is_staff or breakouts.room_of(m.id) == where
        )
        label = None if where is None else {"id": where, "name": breakouts.get(where).name}
        return recipients, {**payload, "breakout": label}

    def _hidden(self) -> frozenset[str]:
        return frozenset(
            m.id for m in self._live.room.members.values() if not m.visible_to_patients
        )

    def _patients(self) -> Iterator[Member]:
        return (m for m in self._live.room.in_room() if m.role is RoomRole.PARTICIPANT)

    def _publish(self, recalled: str | None = None) -> None:
        live = self._live
        server_time = live.now().timestamp()
        breakouts = live.room.breakouts
        if breakouts is None:
            live.connections.publish(
                live.everyone(), outbound.breakouts(None, server_time, recalled)
            )
            return
        now = live.now()
        live.connections.publish(
            live.room.staff_ids(), outbound.breakouts(breakouts.view(now), server_time)
        )
        hidden = self._hidden()
        for patient in self._patients():
            view = breakouts.view(now, viewer=patient.id, hidden=hidden)
            live.connections.publish(frozenset({patient.id}), outbound.breakouts(view, server_time))

    def _rerouted(self, members: list[Member]) -> None:
        """Media follows where these members now are; the room's saved state too."""
        live = self._live
        for member in members:
            live.events.member_changed(member)
        live.events.room_saved(live.room.persisted())

    def _running(self) -> Breakouts:
        breakouts = self._live.room.breakouts
        if breakouts is None:
            raise RoomError("no_breakouts", "no breakout rooms are open")
        return breakouts

    # Messages -----------------------------------------------------------------------------

    def on_start(self, member: Member, message: p.BreakoutsStart) -> None:
        """Split the admitted patients into breakout rooms."""
        room = self._live.room
        room.check(member, RoomAction.RUN_BREAKOUTS)
        if room.breakouts is not None:
            raise RoomError("breakouts_open", "breakout rooms are already open: recall first")
        people = [m.id for m in sorted(self._patients(), key=lambda m: m.since)]
        try:
            groups = split(
                SplitMode(message.mode),
                people,
                rooms=message.rooms,
                assignment=message.assign,
                rng=self._rng,
            )
            opened = Breakouts.open(groups, message.prompt, message.minutes, self._live.now())
        except BreakoutError as exc:
            raise RoomError(exc.code, exc.reason) from None
        room.breakouts = opened
        self._rerouted(list(room.in_room()))
        self._publish()
        self._live.events.breakouts_changed(
            "start",
            member,
            None,
            {
                "mode": message.mode,
                "rooms": len(opened.rooms),
                "patients": len(people),
                "minutes": message.minutes,
            },
        )

    def on_move(self, member: Member, message: p.BreakoutMove) -> None:
        """Move one patient to another breakout, or back to the main room."""
        room = self._live.room
        room.check(member, RoomAction.RUN_BREAKOUTS)
        breakouts = self._running()
        patient = room.members.get(message.member_id)
        if patient is None or patient.role is not RoomRole.PARTICIPANT or not patient.in_room:
            raise RoomError("invalid", "choose a patient who is in the room")
        try:
            breakouts.move(patient.id, message.breakout_id)
        except BreakoutError as exc:
            raise RoomError(exc.code, exc.reason) from None
        self._rerouted([patient])
        self._publish()
        self._live.events.breakouts_changed(
            "move", member, patient.identity.id, {"breakout_id": message.breakout_id}
        )

    def on_visit(self, member: Member, message: p.BreakoutVisit) -> None:
        """A staff member goes to a breakout, or back to the main room."""
        self._live.room.check(member, RoomAction.VISIT_BREAKOUT)
        breakouts = self._running()
        try:
            breakouts.visit(member.id, message.breakout_id)
        except BreakoutError as exc:
            raise RoomError(exc.code, exc.reason) from None
        self._rerouted([member])
        self._publish()
        self._live.events.breakouts_changed(
            "visit", member, None, {"breakout_id": message.breakout_id}
        )

    def on_broadcast(self, member: Member, message: p.BreakoutBroadcast) -> None:
        """A message to everyone, in every breakout and the main room."""
        self._live.room.check(member, RoomAction.RUN_BREAKOUTS)
        self._running()
        text = message.text.strip()
        if not text:
            raise RoomError("invalid", "the message is empty")
        live = self._live
        live.connections.publish(
            live.everyone(), outbound.breakout_broadcast(member, text, live.now())
        )
        live.events.breakouts_changed("broadcast", member, None, {})

    def on_recall(self, member: Member, _message: p.BreakoutsRecall) -> None:
        """Everyone back to the main room now."""
        self._live.room.check(member, RoomAction.RUN_BREAKOUTS)
        self._running()
        self._recall("host", member)

    def on_call(self, member: Member, _message: p.FacilitatorCall) -> None:
        """ "Facilitator please": staff are told which breakout asks for them."""
        self._live.room.check(member, RoomAction.CALL_FACILITATOR)
        breakouts = self._running()
        already = member.id in breakouts.calls
        now = self._live.now()
        try:
            where = breakouts.call(member.id, now)
        except BreakoutError as exc:
            raise RoomError(exc.code, exc.reason) from None
        if already:
            return  # one call at a time: a second tap does not page staff again
        live = self._live
        live.connections.publish(
            live.room.staff_ids(), outbound.facilitator_call(member, where.id, where.name, now)
        )
        live.events.room_saved(live.room.persisted())
        self._publish()

    # The timer ----------------------------------------------------------------------------

    def tick(self) -> None:
        """The one-minute warning, then the recall when the time is up."""
        breakouts = self._live.room.breakouts
        if breakouts is None:
            return
        due = breakouts.due(self._live.now())
        if due == "recall":
            self._recall("timer", None)
        elif due == "warning":
            breakouts.warned = True
            self._live.events.room_saved(self._live.room.persisted())
            self._publish()

    def _recall(self, reason: str, member: Member | None) -> None:
        room = self._live.room
        room.breakouts = None
        # Those not in the room have no media to move (and a drop is not re-reported).
        self._rerouted(list(room.in_room()))
        self._publish(recalled=reason)
        self._live.events.breakouts_changed("recall", member, None, {"reason": reason})
