"""What every part of a running room shares: the room, its connections, its events, time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from rooms import outbound
from rooms.connections import Connections
from rooms.events import RoomEvents
from rooms.model import SUPPORT_PERSON_SEES, Member, Presence, Room

Clock = Callable[[], dt.datetime]


@dataclass(slots=True)
class LiveRoom:
    """A room with connections: changes are published to the members entitled to them."""

    room: Room
    connections: Connections
    events: RoomEvents
    now: Clock

    def everyone(self) -> frozenset[str]:
        """Members in the room and every staff member (waiting staff included)."""
        return self.room.in_room_ids() | self.room.staff_ids()

    def publish_member(self, member: Member) -> None:
        """A member changed: staff see everything, other patients what they may."""
        self.events.member_changed(member)
        self.events.room_saved(self.room.persisted())
        staff = self.room.staff_ids()
        view = outbound.member_view(member)
        self.connections.publish(staff, outbound.member(outbound.member_view(member, staff=True)))
        if not member.visible_to_patients or member.presence is Presence.WAITING:
            others: frozenset[str] = frozenset()
        else:
            others = self.room.in_room_ids() - staff
            if member.role not in SUPPORT_PERSON_SEES:
                # A support person hears of the patient and the clinician, nobody else.
                others -= self.room.support_ids() - {member.id}
        if member.presence is Presence.REMOVED:
            # Other patients see someone leave; only staff and the person know why.
            others -= {member.id}
            self.connections.publish(others, outbound.member_left(view))
            others = frozenset()
        if not member.is_staff:
            others |= {member.id}
        if others:
            self.connections.publish(others, outbound.member(view))

    def publish_room(self) -> None:
        """The room's state or lock changed."""
        self.events.state_changed(self.room.state)
        self.events.room_saved(self.room.persisted())
        self.connections.publish(self.everyone(), outbound.room_state(self.room))
