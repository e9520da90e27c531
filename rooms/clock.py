"""The session clock: absolute timestamps, so every node and restart computes the same time.

Phases never end by themselves: the host advances. Remaining time goes negative in
overtime. Pauses and extensions are recorded, not simulated; nothing here sleeps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rooms.structure import Phase, PhaseKind, StructureError, phases_from_json

WARNING_S = 120.0
TURN_CUE_S = 30.0


class ClockStatus(StrEnum):
    """not_started -> running <-> paused -> ended (ended also straight from not_started)."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    PAUSED = "paused"
    ENDED = "ended"


STATUSES = tuple(status.value for status in ClockStatus)


class ClockError(Exception):
    """A clock operation that does not apply now."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


@dataclass(slots=True)
class CheckinRound:
    """The check-in round's ordered queue and the current speaker's turn."""

    turn_seconds: int
    queue: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    current: str | None = None
    turn_started_at: dt.datetime | None = None
    turn_paused_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "turn_seconds": self.turn_seconds,
            "queue": list(self.queue),
            "done": list(self.done),
            "passed": list(self.passed),
            "current": self.current,
            "turn_started_at": _iso(self.turn_started_at),
            "turn_paused_s": self.turn_paused_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckinRound:
        return cls(
            int(data["turn_seconds"]),
            list(data["queue"]),
            list(data["done"]),
            list(data["passed"]),
            data["current"],
            _time(data["turn_started_at"]),
            float(data["turn_paused_s"]),
        )

    def _begin_turn(self, now: dt.datetime) -> None:
        self.current = self.queue.pop(0) if self.queue else None
        self.turn_started_at = now if self.current else None
        self.turn_paused_s = 0.0

    def next(self, now: dt.datetime) -> None:
        """The current speaker is done; the next one starts."""
        if self.current is not None:
            self.done.append(self.current)
        self._begin_turn(now)

    def pass_turn(self, member_id: str, now: dt.datetime) -> None:
        """A member passes (now, or when their turn would come)."""
        if member_id == self.current:
            self.passed.append(member_id)
            self._begin_turn(now)
        elif member_id in self.queue:
            self.queue.remove(member_id)
            self.passed.append(member_id)
        else:
            raise ClockError("not_in_queue", "that member is not waiting to speak")

    def skip(self, member_id: str, now: dt.datetime) -> None:
        """Leave someone out of the round (they can be added back to the end)."""
        self.pass_turn(member_id, now)

    def to_end(self, member_id: str, now: dt.datetime) -> None:
        """Move someone to the end of the queue (the current speaker included)."""
        if member_id == self.current:
            self.queue.append(member_id)
            self._begin_turn(now)
            return
        if member_id not in self.queue:
            if member_id in self.passed:
                self.passed.remove(member_id)
            elif member_id in self.done:
                raise ClockError("already_spoke", "that member has had their turn")
        else:
            self.queue.remove(member_id)
        self.queue.append(member_id)
        if self.current is None:
            self._begin_turn(now)

    def reorder(self, order: list[str]) -> None:
        """Set the order of those still waiting."""
        if sorted(order) != sorted(self.queue):
            raise ClockError("bad_order", "the new order must list exactly those waiting")
        self.queue = list(order)

    def add_late(self, member_id: str, now: dt.datetime) -> None:
        """Late arrivals join the end of the queue."""
        known = {*self.queue, *self.done, *self.passed, self.current}
        if member_id not in known:
            self.queue.append(member_id)
            if self.current is None:
                self._begin_turn(now)

    def turn_remaining_s(self, now: dt.datetime, paused_at: dt.datetime | None) -> float | None:
        """Seconds left in the current turn (negative past it), or None between turns."""
        if self.turn_started_at is None:
            return None
        until = paused_at or now
        elapsed = (until - self.turn_started_at).total_seconds() - self.turn_paused_s
        return self.turn_seconds - elapsed


@dataclass(slots=True)
class SessionClock:
    """A live session's structure and time, as absolute timestamps."""

    phases: list[Phase]
    index: int = 0
    status: ClockStatus = ClockStatus.NOT_STARTED
    started_at: dt.datetime | None = None
    phase_started_at: dt.datetime | None = None
    paused_at: dt.datetime | None = None
    paused_s: float = 0.0  # total paused time in the current phase
    extension_s: float = 0.0  # minutes added to the current phase, in seconds
    ended_at: dt.datetime | None = None
    held_by: str = "host"  # "cohost" while the lead clinician is with a patient in crisis
    history: list[dict[str, Any]] = field(default_factory=list)
    checkin: CheckinRound | None = None
    grounding_step: int = 0

    # Serialisation ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "phases": [p.to_json() for p in self.phases],
            "index": self.index,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "phase_started_at": _iso(self.phase_started_at),
            "paused_at": _iso(self.paused_at),
            "paused_s": self.paused_s,
            "extension_s": self.extension_s,
            "ended_at": _iso(self.ended_at),
            "held_by": self.held_by,
            "history": self.history,
            "checkin": self.checkin.to_json() if self.checkin else None,
            "grounding_step": self.grounding_step,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionClock:
        return cls(
            list(phases_from_json(data["phases"])),
            int(data["index"]),
            ClockStatus(str(data["status"])),
            _time(data["started_at"]),
            _time(data["phase_started_at"]),
            _time(data["paused_at"]),
            float(data["paused_s"]),
            float(data["extension_s"]),
            _time(data["ended_at"]),
            str(data.get("held_by", "host")),
            list(data.get("history", [])),
            CheckinRound.from_json(data["checkin"]) if data.get("checkin") else None,
            int(data.get("grounding_step", 0)),
        )

    # Reading ------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.phases[self.index]

    def elapsed_s(self, now: dt.datetime) -> float:
        """Seconds spent in the current phase, pauses excluded."""
        if self.phase_started_at is None:
            return 0.0
        until = self.ended_at or self.paused_at or now
        return (until - self.phase_started_at).total_seconds() - self.paused_s

    def planned_s(self) -> float:
        """The current phase's planned length, extensions included."""
        return self.phase.minutes * 60 + self.extension_s

    def remaining_s(self, now: dt.datetime) -> float:
        """Seconds left in the current phase; negative in overtime."""
        return self.planned_s() - self.elapsed_s(now)

    def view(self, now: dt.datetime) -> dict[str, Any]:
        """The state plus what it means at `now` (clients recompute from the state)."""
        remaining = self.remaining_s(now)
        turn = self.checkin.turn_remaining_s(now, self.paused_at) if self.checkin else None
        return {
            **self.to_json(),
            "remaining_s": remaining,
            "warning": self.status is ClockStatus.RUNNING and 0 < remaining <= WARNING_S,
            "overtime": self.status in (ClockStatus.RUNNING, ClockStatus.PAUSED) and remaining < 0,
            "turn_remaining_s": turn,
            "turn_cue": turn is not None and 0 < turn <= TURN_CUE_S,
        }

    # Operations ---------------------------------------------------------------------------

    def _require(self, *statuses: ClockStatus) -> None:
        if self.status not in statuses:
            raise ClockError("clock_state", f"the clock is {self.status.replace('_', ' ')}")

    def _enter(self, index: int, now: dt.datetime) -> None:
        if self.phase_started_at is not None:
            self.history.append(
                {
                    "index": self.index,
                    "kind": self.phase.kind,
                    "started_at": _iso(self.phase_started_at),
                    "ended_at": _iso(self.paused_at or now),
                    "paused_s": self.paused_s,
                }
            )
        self.index = index
        self.phase_started_at = now
        self.paused_s = 0.0
        self.extension_s = 0.0
        self.grounding_step = 0
        if self.paused_at is not None:
            self.paused_at = now  # still paused, in the new phase
        if self.phase.kind == PhaseKind.CHECKIN_ROUND and self.checkin is None:
            self.checkin = CheckinRound(self.phase.turn_seconds)

    def start(self, now: dt.datetime) -> None:
        """Begin the first phase."""
        self._require(ClockStatus.NOT_STARTED)
        self.status = ClockStatus.RUNNING
        self.started_at = now
        self._enter(self.index, now)

    def pause(self, now: dt.datetime) -> None:
        self._require(ClockStatus.RUNNING)
        self.status = ClockStatus.PAUSED
        self.paused_at = now

    def resume(self, now: dt.datetime) -> None:
        self._require(ClockStatus.PAUSED)
        assert self.paused_at is not None
        gap = (now - self.paused_at).total_seconds()
        self.paused_s += gap
        if self.checkin is not None and self.checkin.turn_started_at is not None:
            self.checkin.turn_paused_s += gap
        self.paused_at = None
        self.status = ClockStatus.RUNNING

    def extend(self, minutes: int) -> None:
        """Add minutes to the current phase."""
        self._require(ClockStatus.RUNNING, ClockStatus.PAUSED)
        if not 1 <= minutes <= 60:
            raise ClockError("bad_minutes", "extend by 1-60 minutes")
        self.extension_s += minutes * 60

    def jump(self, index: int, now: dt.datetime) -> None:
        """Go to any phase (next and previous are jumps by one)."""
        self._require(ClockStatus.RUNNING, ClockStatus.PAUSED)
        if not 0 <= index < len(self.phases):
            raise ClockError("bad_phase", "there is no such phase")
        if index == self.index:
            return
        self._enter(index, now)

    def next(self, now: dt.datetime) -> None:
        if self.index + 1 >= len(self.phases):
            raise ClockError("last_phase", "this is the last phase: end the session instead")
        self.jump(self.index + 1, now)

    def previous(self, now: dt.datetime) -> None:
        if self.index == 0:
            raise ClockError("first_phase", "this is the first phase")
        self.jump(self.index - 1, now)

    def end(self, now: dt.datetime) -> None:
        self._require(ClockStatus.RUNNING, ClockStatus.PAUSED, ClockStatus.NOT_STARTED)
        if self.phase_started_at is not None:
            self._enter(self.index, now)
        self.status = ClockStatus.ENDED
        self.ended_at = now
        self.paused_at = None

    def hand_off(self, to: str, now: dt.datetime, *, pause: bool) -> None:
        """Crisis hand-off: the co-host runs the clock (or it pauses) while the host is away."""
        if to not in ("host", "cohost"):
            raise ClockError("bad_holder", "the clock is held by the host or the co-host")
        self.held_by = to
        if pause and self.status is ClockStatus.RUNNING:
            self.pause(now)

    # Plan edits (one session's plan; the template is unchanged) -------------------------

    def set_minutes(self, index: int, minutes: int) -> None:
        if not 0 <= index < len(self.phases):
            raise ClockError("bad_phase", "there is no such phase")
        phase = self.phases[index]
        try:
            self.phases[index] = Phase(phase.kind, phase.title, minutes, phase.settings)
        except StructureError as exc:
            raise ClockError("bad_minutes", str(exc)) from None

    def drop(self, index: int) -> None:
        """Remove a phase that has not started yet."""
        if not 0 <= index < len(self.phases) or len(self.phases) == 1:
            raise ClockError("bad_phase", "there is no such phase to drop")
        if self.status is not ClockStatus.NOT_STARTED and index <= self.index:
            raise ClockError("phase_started", "only phases still to come can be dropped")
        del self.phases[index]
        if self.status is ClockStatus.NOT_STARTED and self.index >= len(self.phases):
            self.index = len(self.phases) - 1

    def reorder(self, order: list[int]) -> None:
        """Reorder the phases still to come (all of them before the start)."""
        fixed = 0 if self.status is ClockStatus.NOT_STARTED else self.index + 1
        upcoming = list(range(fixed, len(self.phases)))
        if sorted(order) != upcoming:
            raise ClockError("bad_order", "list each phase still to come exactly once")
        self.phases = self.phases[:fixed] + [self.phases[i] for i in order]
