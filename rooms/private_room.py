"""The private room of the crisis path: a clinician takes one patient aside, inside the room.

Their connections stay up; media flows only between members of the same `space`. Other
patients learn only that someone stepped out (the space token is random), never why.
"""

from __future__ import annotations

import secrets

from rooms import outbound
from rooms import protocol as p
from rooms.clock import ClockStatus
from rooms.live import LiveRoom
from rooms.model import Member, RoomAction, RoomError, RoomRole
from rooms.session_ops import SessionOps

Roster = list[dict[str, str]]


class PrivateRooms:
    """Opens and closes the private rooms of one room."""

    def __init__(self, live: LiveRoom, session: SessionOps, float_roster: Roster) -> None:
        self._live = live
        self._session = session
        self._float_roster = float_roster

    def on_private_room(self, member: Member, message: p.PrivateRoom) -> None:
        """Take a patient to a private room (open) or bring them back."""
        room = self._live.room
        room.check(member, RoomAction.PRIVATE_ROOM)
        patient = room.members.get(message.member_id)
        # Only a patient: the private room opens a crisis event in that patient's name.
        if patient is None or patient.role is not RoomRole.PARTICIPANT or not patient.in_room:
            raise RoomError("invalid", "choose a patient who is in the room")
        if message.open:
            self._open(member, patient)
        else:
            self._close(patient)

    def _close(self, patient: Member) -> None:
        live = self._live
        space = patient.space
        if space is None:
            raise RoomError("invalid", "this patient is not in a private room")
        for other in live.room.members.values():
            if other.space == space:
                other.space = None
                live.publish_member(other)
        live.connections.publish(live.everyone(), outbound.private_room_closed(patient.id))

    def _keeper(self, clinician: Member) -> Member | None:
        """The co-facilitator who keeps the group, if one is here and free."""
        return next(
            (
                m
                for m in self._live.room.members.values()
                if m.role in (RoomRole.HOST, RoomRole.COHOST)
                and m is not clinician
                and m.space is None
                and m.id in self._live.connections
            ),
            None,
        )

    def _open(self, clinician: Member, patient: Member) -> None:
        live = self._live
        now = live.now()
        if patient.space is not None or clinician.space is not None:
            raise RoomError("busy", "already in a private room")
        space = f"side-{secrets.token_hex(6)}"
        patient.space = clinician.space = space
        # The co-facilitator keeps the group: the clock goes to them, or pauses for a break.
        keeper = self._keeper(clinician)
        clock = self._session.clock
        if clock is not None and clock.status is not ClockStatus.NOT_STARTED:
            holder = keeper.role if keeper is not None else clinician.role
            self._session.hand_off(holder, pause=keeper is None)
        live.publish_member(patient)
        live.publish_member(clinician)
        if not clinician.visible_to_patients:
            # A supervisor watching unseen becomes visible to this one patient only.
            live.connections.publish(
                frozenset({patient.id}), outbound.member(outbound.member_view(clinician))
            )
        group = frozenset(m.id for m in live.room.in_room() if m.space is None)
        keeper_id = keeper.id if keeper is not None else None
        live.connections.publish(group, outbound.private_room_opened(patient.id, keeper_id))
        live.connections.publish(
            frozenset({patient.id, clinician.id}), outbound.private_room_mine(patient.id, clinician)
        )
        if keeper is None:
            live.connections.publish(
                live.room.staff_ids(), outbound.float_needed(patient.id, self._float_roster)
            )
        live.events.private_room_opened(patient, clinician, now)
