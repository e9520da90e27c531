"""Breakout practice rooms inside a group session: who is where, the prompt and the timer.

Plain data and pure functions. Splitting is separate from state so it can be checked on
its own (everyone placed exactly once, sizes balanced). The timer is absolute timestamps
(started, ends), like the session clock, so any process and any restart computes the same
remaining time; the one-minute warning and the recall at the end are decided by comparing
those with the injected clock's now, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

WARNING_S = 60.0
MAX_ROOMS = 20
MAX_MINUTES = 120


class SplitMode(StrEnum):
    """How the host splits the admitted patients."""

    HAND = "hand"
    RANDOM = "random"
    PAIRS = "pairs"
    TRIADS = "triads"


class BreakoutError(Exception):
    """A breakout operation that does not apply, with a machine-readable code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# Splitting ----------------------------------------------------------------------------------


def _deal(people: Sequence[str], rooms: int) -> list[list[str]]:
    """Deal `people` round-robin into `rooms` groups: sizes differ by at most one."""
    groups: list[list[str]] = [[] for _ in range(rooms)]
    for index, person in enumerate(people):
        groups[index % rooms].append(person)
    return groups


def split_random(people: Sequence[str], rooms: int, rng: random.Random) -> list[list[str]]:
    """Shuffle `people` into `rooms` balanced groups (never more groups than people)."""
    if not people:
        raise BreakoutError("nobody", "nobody is in the room to split")
    if not 1 <= rooms <= MAX_ROOMS:
        raise BreakoutError("invalid", f"choose between 1 and {MAX_ROOMS} rooms")
    shuffled = list(people)
    rng.shuffle(shuffled)
    return _deal(shuffled, min(rooms, len(shuffled)))


def split_groups_of(people: Sequence[str], size: int, rng: random.Random) -> list[list[str]]:
    """Pairs (2) or triads (3): as many groups of `size` as fit; the rest join others.

    Seven people in pairs are 3, 2, 2; in triads 4, 3. One person alone is one room.
    """
    rooms = max(1, len(people) // size)
    return split_random(people, min(rooms, MAX_ROOMS), rng)


def split_by_hand(people: Sequence[str], assignment: Sequence[Sequence[str]]) -> list[list[str]]:
    """The host's own split: every patient in the room placed exactly once, nobody else."""
    if not people:
        raise BreakoutError("nobody", "nobody is in the room to split")
    groups = [list(group) for group in assignment if group]
    if not 1 <= len(groups) <= MAX_ROOMS:
        raise BreakoutError("invalid", f"make between 1 and {MAX_ROOMS} rooms")
    placed = [person for group in groups for person in group]
    if len(placed) != len(set(placed)):
        raise BreakoutError("invalid", "someone is placed in two rooms")
    present = set(people)
    if not set(placed) <= present:
        raise BreakoutError("invalid", "someone placed is not in the room")
    if set(placed) != present:
        raise BreakoutError("invalid", "place everyone who is in the room")
    return groups


def split(
    mode: SplitMode,
    people: Sequence[str],
    *,
    rooms: int | None = None,
    assignment: Sequence[Sequence[str]] | None = None,
    rng: random.Random,
) -> list[list[str]]:
    """Split `people` as `mode` says."""
    if mode is SplitMode.HAND:
        if assignment is None:
            raise BreakoutError("invalid", "say who goes to which room")
        return split_by_hand(people, assignment)
    if mode is SplitMode.RANDOM:
        if rooms is None:
            raise BreakoutError("invalid", "say how many rooms")
        return split_random(people, rooms, rng)
    return split_groups_of(people, 2 if mode is SplitMode.PAIRS else 3, rng)


# State ------------------------------------------------------------------------------------


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Breakout:
    """One practice room and the patients placed in it."""

    id: str
    name: str
    members: tuple[str, ...]


@dataclass(slots=True)
class Breakouts:
    """The breakouts running in one room now."""

    rooms: tuple[Breakout, ...]
    prompt: str
    started_at: dt.datetime
    ends_at: dt.datetime
    warned: bool = False
    # Staff visiting a breakout (staff member id -> breakout id); absent: the main room.
    visits: dict[str, str] = field(default_factory=dict)
    # "Facilitator please": member id -> when they asked (cleared when staff visit).
    calls: dict[str, dt.datetime] = field(default_factory=dict)

    @classmethod
    def open(
        cls, groups: Sequence[Sequence[str]], prompt: str, minutes: int, now: dt.datetime
    ) -> Breakouts:
        """Open one breakout per group, ending `minutes` from `now`."""
        if not 1 <= minutes <= MAX_MINUTES:
            raise BreakoutError("invalid", f"choose between 1 and {MAX_MINUTES} minutes")
        rooms = tuple(
            Breakout(f"b{index}", f"Room {index}", tuple(group))
            for index, group in enumerate(groups, start=1)
        )
        return cls(rooms, prompt.strip(), now, now + dt.timedelta(minutes=minutes))

    def get(self, breakout_id: str) -> Breakout:
        """The breakout with this id."""
        for room in self.rooms:
            if room.id == breakout_id:
                return room
        raise BreakoutError("unknown_breakout", "no such breakout room")

    def room_of(self, member_id: str) -> str | None:
        """Where a member is: a visited breakout (staff), their own (patients), or None."""
        visiting = self.visits.get(member_id)
        if visiting is not None:
            return visiting
        for room in self.rooms:
            if member_id in room.members:
                return room.id
        return None

    def members_of(self, breakout_id: str) -> frozenset[str]:
        """The patients placed in a breakout and the staff visiting it."""
        room = self.get(breakout_id)
        visitors = {who for who, where in self.visits.items() if where == breakout_id}
        return frozenset(room.members) | visitors

    def move(self, member_id: str, breakout_id: str | None) -> None:
        """Move a patient to another breakout (None: back to the main room)."""
        if breakout_id is not None:
            self.get(breakout_id)
        self.rooms = tuple(
            Breakout(
                room.id,
                room.name,
                tuple(m for m in room.members if m != member_id)
                + ((member_id,) if room.id == breakout_id else ()),
            )
            for room in self.rooms
        )
        self.calls.pop(member_id, None)

    def visit(self, staff_id: str, breakout_id: str | None) -> None:
        """A staff member goes to a breakout (None: back to the main room)."""
        if breakout_id is None:
            self.visits.pop(staff_id, None)
            return
        self.get(breakout_id)
        self.visits[staff_id] = breakout_id
        # Staff arrived: the calls from that breakout are answered.
        room = self.get(breakout_id)
        for member_id in room.members:
            self.calls.pop(member_id, None)

    def call(self, member_id: str, now: dt.datetime) -> Breakout:
        """A patient asks for a facilitator to come to their breakout."""
        where = self.room_of(member_id)
        if where is None:
            raise BreakoutError("not_in_breakout", "you are not in a breakout room")
        self.calls[member_id] = now
        return self.get(where)

    # Timer ----------------------------------------------------------------------------

    def remaining_s(self, now: dt.datetime) -> float:
        """Seconds left (negative once the time is up)."""
        return (self.ends_at - now).total_seconds()

    def due(self, now: dt.datetime) -> str | None:
        """What the timer calls for now: "warning" (once), "recall", or None."""
        left = self.remaining_s(now)
        if left <= 0:
            return "recall"
        if left <= WARNING_S and not self.warned:
            return "warning"
        return None

    # Wire and storage -----------------------------------------------------------------

    def view(
        self, now: dt.datetime, *, viewer: str | None = None, hidden: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The state as of `now`; for a patient (`viewer`), only their own breakout, without
        the `hidden` members (a supervisor watching unseen)."""
        base: dict[str, Any] = {
            "prompt": self.prompt,
            "started_at": _iso(self.started_at),
            "ends_at": _iso(self.ends_at),
            "remaining_s": self.remaining_s(now),
            "warning": self.warned or self.remaining_s(now) <= WARNING_S,
        }
        if viewer is not None:
            where = self.room_of(viewer)
            if where is None:
                # Who is away in a breakout (not where): their tiles leave the main room.
                away = {m for room in self.rooms for m in room.members} | set(self.visits)
                return {**base, "room": None, "elsewhere": sorted(away - hidden)}
            room = self.get(where)
            visitors = sorted(w for w, at in self.visits.items() if at == where and w not in hidden)
            return {
                **base,
                "room": {
                    "id": room.id,
                    "name": room.name,
                    "members": list(room.members),
                    "visitors": visitors,
                },
                "called": viewer in self.calls,
            }
        return {
            **base,
            "rooms": [
                {
                    "id": room.id,
                    "name": room.name,
                    "members": list(room.members),
                    "visitors": sorted(w for w, where in self.visits.items() if where == room.id),
                    "calls": [m for m in room.members if m in self.calls],
                }
                for room in self.rooms
            ],
        }

    def to_json(self) -> dict[str, Any]:
        """For the room's saved state."""
        return {
            "rooms": [
                {"id": room.id, "name": room.name, "members": list(room.members)}
                for room in self.rooms
            ],
            "prompt": self.prompt,
            "started_at": _iso(self.started_at),
            "ends_at": _iso(self.ends_at),
            "warned": self.warned,
            "visits": dict(self.visits),
            "calls": {who: _iso(at) for who, at in self.calls.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Breakouts:
        """Rebuild what `to_json` saved."""
        return cls(
            tuple(
                Breakout(str(room["id"]), str(room["name"]), tuple(room["members"]))
                for room in data["rooms"]
            ),
            str(data["prompt"]),
            dt.datetime.fromisoformat(data["started_at"]),
            dt.datetime.fromisoformat(data["ends_at"]),
            bool(data.get("warned", False)),
            dict(data.get("visits", {})),
            {who: dt.datetime.fromisoformat(at) for who, at in data.get("calls", {}).items()},
        )
