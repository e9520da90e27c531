"""A room: who is in it, in what role and state, and the moderator's controls."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rooms.breakouts import Breakouts


class RoomRole(StrEnum):
    """A person's role in one room."""

    HOST = "host"  # the lead clinician
    COHOST = "cohost"  # the co-facilitator
    PARTICIPANT = "participant"  # a patient
    OBSERVER = "observer"  # a supervisor
    SUPPORT_PERSON = "support_person"  # a patient's support person, in a family session


class RoomState(StrEnum):
    """scheduled -> open (staff may enter) -> live -> ended."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    LIVE = "live"
    ENDED = "ended"


class Presence(StrEnum):
    """Where a member is."""

    WAITING = "waiting"  # in the waiting room
    ADMITTED = "admitted"  # in the room, connected
    RECONNECTING = "reconnecting"  # socket dropped; within the grace period
    LEFT = "left"
    REMOVED = "removed"  # removed by a host; needs re-admission


class RoomAction(StrEnum):
    """What members may do; checked in one place (`PERMISSIONS`)."""

    ADMIT = "admit"
    LOCK = "lock"
    REMOVE = "remove"
    MUTE = "mute"
    LOWER_HAND = "lower_hand"
    END = "end"
    START = "start"
    CHAT_ROOM = "chat_room"
    CHAT_PRIVATE = "chat_private"
    STAFF_NOTE = "staff_note"
    RAISE_HAND = "raise_hand"
    REACT = "react"
    ASK_UNMUTE = "ask_unmute"
    SEE_WAITING = "see_waiting"
    RUN_CLOCK = "run_clock"
    ASK_HELP = "ask_help"
    SHARE_SCREEN = "share_screen"  # participants only when a host allows it
    PRIVATE_ROOM = "private_room"
    ALLOW_SCREEN = "allow_screen"
    MEDIA = "media"  # join, answer, update and leave one's own media
    LOG_DROP_STEP = "log_drop_step"  # a step of a dropped-connection prompt
    RUN_BREAKOUTS = "run_breakouts"  # split, move, broadcast, recall
    VISIT_BREAKOUT = "visit_breakout"
    CALL_FACILITATOR = "call_facilitator"  # a patient in a breakout asks for staff
    SHOW_HANDOUT = "show_handout"  # show a handout to everyone, on the host's page


_STAFF_CONTROLS = frozenset(
    {
        RoomAction.ADMIT,
        RoomAction.LOCK,
        RoomAction.REMOVE,
        RoomAction.MUTE,
        RoomAction.LOWER_HAND,
        RoomAction.START,
        RoomAction.CHAT_ROOM,
        RoomAction.CHAT_PRIVATE,
        RoomAction.STAFF_NOTE,
        RoomAction.REACT,
        RoomAction.SEE_WAITING,
        RoomAction.RUN_CLOCK,
        RoomAction.SHARE_SCREEN,
        RoomAction.ALLOW_SCREEN,
        RoomAction.PRIVATE_ROOM,
        RoomAction.MEDIA,
        # The dropped-connection prompt goes to the facilitators only; they log its steps.
        RoomAction.LOG_DROP_STEP,
        RoomAction.RUN_BREAKOUTS,
        RoomAction.VISIT_BREAKOUT,
        RoomAction.SHOW_HANDOUT,
    }
)
PERMISSIONS: dict[RoomRole, frozenset[RoomAction]] = {
    RoomRole.HOST: _STAFF_CONTROLS | {RoomAction.END},
    RoomRole.COHOST: _STAFF_CONTROLS,
    # An observer watches and writes staff notes; a private message would reveal them.
    # A supervisor may also take a patient aside during a crisis (the private room).
    RoomRole.OBSERVER: frozenset(
        {
            RoomAction.STAFF_NOTE,
            RoomAction.SEE_WAITING,
            RoomAction.PRIVATE_ROOM,
            RoomAction.MEDIA,
            # A supervisor may look in on a breakout, unseen like in the group.
            RoomAction.VISIT_BREAKOUT,
        }
    ),
    RoomRole.PARTICIPANT: frozenset(
        {
            RoomAction.CHAT_ROOM,
            RoomAction.CHAT_PRIVATE,
            RoomAction.RAISE_HAND,
            RoomAction.REACT,
            RoomAction.ASK_UNMUTE,
            RoomAction.ASK_HELP,
            RoomAction.MEDIA,
            RoomAction.CALL_FACILITATOR,
        }
    ),
    # A family session's guest: talks, listens and writes to the room, nothing else (no
    # help button, check-in, private messages or other patients: CLINICAL.md section 3).
    RoomRole.SUPPORT_PERSON: frozenset({RoomAction.CHAT_ROOM, RoomAction.MEDIA}),
}
# What a support person may see of the others: the patient and the clinician only.
SUPPORT_PERSON_SEES = frozenset({RoomRole.HOST, RoomRole.PARTICIPANT})
# What a refusal says where it says more than "<role> may not <action>".
REFUSALS: dict[RoomAction, str] = {
    RoomAction.ASK_HELP: "only patients use the help button",
    RoomAction.ALLOW_SCREEN: "only the clinicians can allow screen sharing",
    RoomAction.LOG_DROP_STEP: "only the host and co-host log these steps",
    RoomAction.RUN_BREAKOUTS: "only the host and co-host run breakout rooms",
    RoomAction.CALL_FACILITATOR: "only patients call a facilitator to their breakout",
    RoomAction.SHOW_HANDOUT: "only the host and co-host show a handout to everyone",
}
STAFF_ROLES = frozenset({RoomRole.HOST, RoomRole.COHOST, RoomRole.OBSERVER})


class RoomError(Exception):
    """A refused room operation, with a machine-readable code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def check_role(actor: Member, action: RoomAction) -> None:
    """Raise unless `actor`'s role allows `action` (the one permission check)."""
    if action not in PERMISSIONS[actor.role]:
        reason = REFUSALS.get(action, f"{actor.role.value} may not {action.value}")
        raise RoomError("forbidden", reason)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a member is across devices: a staff member or a patient."""

    kind: str  # "staff" | "patient"
    id: str

    @property
    def key(self) -> str:
        """A stable member id within a room."""
        return f"{self.kind}:{self.id}"


@dataclass(slots=True, eq=False)
class Member:
    """One person in a room."""

    identity: Identity
    role: RoomRole
    name: str
    presence: Presence
    since: dt.datetime  # when the current presence began
    hand_raised: bool = False
    audio_blocked: bool = False  # a host muted this member; the server stops forwarding
    video_blocked: bool = False
    unmute_requested: bool = False
    visible_to_patients: bool = True
    readmitted: bool = False  # removed, then let back in by a host: skips the waiting room
    # A private side room inside this room (a clinician and one patient): media flows only
    # between members in the same space; None is the group. The token is random so that
    # other patients learn only that someone stepped out, never why.
    space: str | None = None
    # What staff (only) see about a patient, supplied by the server (e.g. consent status).
    staff_info: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.identity.key

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def in_room(self) -> bool:
        return self.presence in (Presence.ADMITTED, Presence.RECONNECTING)


@dataclass(slots=True)
class Room:
    """A room for one session instance (a group occurrence or a one-on-one)."""

    id: str
    title: str
    kind: str  # "group" | "individual" | "family"
    starts_at: dt.datetime
    state: RoomState = RoomState.OPEN
    locked: bool = False
    observers_visible: bool = False  # program policy: may patients see a supervisor?
    members: dict[str, Member] = field(default_factory=dict)
    breakouts: Breakouts | None = None  # breakout practice rooms running now
    # The handout shown to everyone (care.handouts.SharedView as JSON), or None.
    handout: dict[str, Any] | None = None

    # Membership -------------------------------------------------------------------------

    def arrive(self, identity: Identity, role: RoomRole, name: str, now: dt.datetime) -> Member:
        """Someone connects: staff go straight in, patients wait unless already admitted."""
        if self.state is RoomState.ENDED:
            raise RoomError("ended", "this session has ended")
        member = self.members.get(identity.key)
        if member is not None and member.presence is Presence.REMOVED:
            raise RoomError("removed", "a clinician needs to let you back in")
        if member is not None and member.presence in (Presence.ADMITTED, Presence.RECONNECTING):
            # The same person on a new device, or back within the grace period.
            member.presence = Presence.ADMITTED
            member.since = now
            member.name = name or member.name
            return member
        if member is not None and member.readmitted:
            member.presence = Presence.ADMITTED
            member.since = now
            member.readmitted = False
            return member
        if role in (RoomRole.PARTICIPANT, RoomRole.SUPPORT_PERSON):
            if self.locked and member is None:
                raise RoomError("locked", "the session is not taking new arrivals")
            presence = Presence.WAITING
        else:
            presence = Presence.ADMITTED
        member = Member(
            identity,
            role,
            name,
            presence,
            now,
            visible_to_patients=role is not RoomRole.OBSERVER or self.observers_visible,
        )
        if identity.key in self.members:
            old = self.members[identity.key]
            member.audio_blocked, member.video_blocked = old.audio_blocked, old.video_blocked
        self.members[identity.key] = member
        return member

    def persisted(self) -> dict[str, Any]:
        """What another process needs to take this room over: ids, roles and flags only."""
        return {
            "locked": self.locked,
            "breakouts": None if self.breakouts is None else self.breakouts.to_json(),
            "handout": self.handout,
            "members": [
                {
                    "kind": m.identity.kind,
                    "id": m.identity.id,
                    "role": m.role.value,
                    "presence": m.presence.value,
                    "audio_blocked": m.audio_blocked,
                    "video_blocked": m.video_blocked,
                    "readmitted": m.readmitted,
                }
                for m in self.members.values()
                if m.presence is not Presence.WAITING
            ],
        }

    def restore(self, saved: dict[str, Any], now: dt.datetime) -> list[Member]:
        """Rebuild membership saved by `persisted` (the room moved to this process).

        Everyone who was in comes back as `reconnecting`, so their next connection puts them
        straight back in the room with their role and mute state, not in the waiting room.
        """
        self.locked = bool(saved.get("locked", False))
        if saved.get("breakouts"):
            self.breakouts = Breakouts.from_json(saved["breakouts"])
        self.handout = saved.get("handout")
        restored: list[Member] = []
        for item in saved.get("members", []):
            presence = Presence(item["presence"])
            if presence in (Presence.ADMITTED, Presence.RECONNECTING):
                presence = Presence.RECONNECTING
            elif presence is not Presence.REMOVED:
                continue
            role = RoomRole(item["role"])
            member = Member(
                Identity(item["kind"], item["id"]),
                role,
                "Reconnecting…",  # names are not stored; the person's own connection brings it
                presence,
                now,
                audio_blocked=bool(item.get("audio_blocked")),
                video_blocked=bool(item.get("video_blocked")),
                readmitted=bool(item.get("readmitted")),
                visible_to_patients=role is not RoomRole.OBSERVER or self.observers_visible,
            )
            self.members[member.id] = member
            restored.append(member)
        return restored

    def disconnect(self, member_id: str, now: dt.datetime) -> Member:
        """A member's socket dropped: admitted members are `reconnecting`, waiters leave."""
        member = self._member(member_id)
        if member.presence is Presence.ADMITTED:
            member.presence = Presence.RECONNECTING
            member.since = now
        elif member.presence is Presence.WAITING:
            member.presence = Presence.LEFT
            member.since = now
        return member

    def expire(self, member_id: str, now: dt.datetime) -> Member | None:
        """The reconnect grace ran out: the member has left."""
        member = self.members.get(member_id)
        if member is None or member.presence is not Presence.RECONNECTING:
            return None
        member.presence = Presence.LEFT
        member.since = now
        member.hand_raised = False
        return member

    # Moderation -------------------------------------------------------------------------

    def check(self, actor: Member, action: RoomAction) -> None:
        """Raise unless `actor`'s role allows `action` and they are in the room."""
        check_role(actor, action)
        if not actor.in_room:
            raise RoomError("not_admitted", "wait to be admitted first")

    def admit(self, actor: Member, member_id: str, now: dt.datetime) -> Member:
        """Let a waiting (or removed) patient in."""
        self.check(actor, RoomAction.ADMIT)
        member = self._member(member_id)
        if member.presence not in (Presence.WAITING, Presence.REMOVED):
            raise RoomError("not_waiting", "that person is not waiting")
        if member.presence is Presence.REMOVED:
            # Re-admission: the removed person may come back, straight into the room.
            member.presence = Presence.LEFT
            member.since = now
            member.readmitted = True
            return member
        member.presence = Presence.ADMITTED
        member.since = now
        return member

    def admit_all(self, actor: Member, now: dt.datetime) -> list[Member]:
        """Admit everyone waiting."""
        self.check(actor, RoomAction.ADMIT)
        waiting = [m for m in self.members.values() if m.presence is Presence.WAITING]
        for member in waiting:
            member.presence = Presence.ADMITTED
            member.since = now
        return waiting

    def set_locked(self, actor: Member, locked: bool) -> None:
        """Stop (or resume) taking new arrivals."""
        self.check(actor, RoomAction.LOCK)
        self.locked = locked

    def remove(self, actor: Member, member_id: str, now: dt.datetime) -> Member:
        """Remove a patient; they cannot come back this session unless re-admitted."""
        self.check(actor, RoomAction.REMOVE)
        member = self._member(member_id)
        if member.is_staff:
            raise RoomError("forbidden", "staff cannot be removed from the room")
        member.presence = Presence.REMOVED
        member.since = now
        member.hand_raised = False
        return member

    def block_media(
        self, actor: Member, member_id: str, *, audio: bool | None, video: bool | None
    ) -> Member:
        """Mute a member's audio or stop their video (True), or allow it again (False)."""
        self.check(actor, RoomAction.MUTE)
        member = self._member(member_id)
        if member.is_staff:
            raise RoomError("forbidden", "staff media cannot be blocked")
        if audio is not None:
            member.audio_blocked = audio
        if video is not None:
            member.video_blocked = video
        if audio is False or video is False:
            member.unmute_requested = False
        return member

    def ask_unmute(self, actor: Member) -> Member:
        """A muted member asks to be heard again."""
        self.check(actor, RoomAction.ASK_UNMUTE)
        if not (actor.audio_blocked or actor.video_blocked):
            raise RoomError("not_muted", "you are not muted")
        actor.unmute_requested = True
        return actor

    def set_hand(self, actor: Member, member_id: str, raised: bool) -> Member:
        """Raise one's own hand, lower one's own, or (staff) lower anyone's."""
        member = self._member(member_id)
        if member is actor:
            self.check(actor, RoomAction.RAISE_HAND)
        else:
            if raised:
                raise RoomError("forbidden", "only the member can raise their hand")
            self.check(actor, RoomAction.LOWER_HAND)
        member.hand_raised = raised
        return member

    def start(self, actor: Member) -> None:
        """The session is live."""
        self.check(actor, RoomAction.START)
        if self.state is RoomState.ENDED:
            raise RoomError("ended", "this session has ended")
        self.state = RoomState.LIVE

    def end(self, actor: Member) -> None:
        """End the session for everyone."""
        self.check(actor, RoomAction.END)
        self.state = RoomState.ENDED

    # Views ------------------------------------------------------------------------------

    def _member(self, member_id: str) -> Member:
        member = self.members.get(member_id)
        if member is None:
            raise RoomError("unknown_member", "no such member in this room")
        return member

    def media_space(self, member: Member) -> str | None:
        """Where a member's media flows: a private room first, then their breakout, else
        the group (the SFU forwards only between members of the same space)."""
        if member.space is not None:
            return member.space
        if self.breakouts is not None:
            where = self.breakouts.room_of(member.id)
            if where is not None:
                return f"breakout-{where}"
        return None

    def in_room_ids(self) -> frozenset[str]:
        """Members in the room now (admitted, or reconnecting)."""
        return frozenset(m.id for m in self.members.values() if m.in_room)

    def staff_ids(self) -> frozenset[str]:
        """The clinicians and supervisors of the room."""
        return frozenset(m.id for m in self.members.values() if m.is_staff)

    def in_room(self) -> Iterator[Member]:
        """Members admitted or reconnecting."""
        return (m for m in self.members.values() if m.in_room)

    def waiting(self) -> list[Member]:
        """Waiting members, longest-waiting first."""
        return sorted(
            (m for m in self.members.values() if m.presence is Presence.WAITING),
            key=lambda m: m.since,
        )

    def visible_to(self, viewer: Member) -> list[Member]:
        """The members `viewer` may see listed: staff see all; an admitted patient sees who
        is in the room; a waiting patient sees only themself."""
        if viewer.is_staff:
            return list(self.members.values())
        if not viewer.in_room:
            return [viewer]
        return [m for m in self.members.values() if m.in_room and self.sees(viewer, m)]

    def sees(self, viewer: Member, member: Member) -> bool:
        """Whether a patient or support person may see `member` listed (staff see all)."""
        if member is viewer or viewer.is_staff:
            return True
        if viewer.role is RoomRole.SUPPORT_PERSON:
            return member.role in SUPPORT_PERSON_SEES and member.visible_to_patients
        return member.visible_to_patients

    def support_ids(self) -> frozenset[str]:
        """Support people in the room (a family session's guests)."""
        return frozenset(m.id for m in self.members.values() if m.role is RoomRole.SUPPORT_PERSON)
