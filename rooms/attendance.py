"""Attendance from recorded events only: time present per phase, breaks excluded, and the
weekly roll-up against the program's IOP threshold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STARTS = frozenset({"admitted", "joined"})
ENDS = frozenset({"disconnected", "left", "removed"})
ADULT_WEEKLY_HOURS = 9.0
ADOLESCENT_WEEKLY_HOURS = 6.0
SUD_DAILY_HOURS = 3.0
SUD_DAYS = 3


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded presence event."""

    person: str
    event: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class PhaseSpan:
    """When one phase ran (pauses are still part of being present)."""

    index: int
    kind: str
    title: str
    start: dt.datetime
    end: dt.datetime


@dataclass(slots=True)
class Presence:
    """One person's attendance in one session."""

    person: str
    intervals: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)
    reconnects: int = 0
    per_phase_s: dict[int, float] = field(default_factory=dict)
    total_s: float = 0.0
    excluded_break_s: float = 0.0
    before_start_s: float = 0.0  # admitted before the facilitator pressed Start (counted)

    @property
    def first_join(self) -> dt.datetime | None:
        return self.intervals[0][0] if self.intervals else None

    @property
    def last_leave(self) -> dt.datetime | None:
        return self.intervals[-1][1] if self.intervals else None

    @property
    def minutes(self) -> float:
        """Minutes present, breaks excluded."""
        return round(self.total_s / 60, 1)


def intervals(events: Sequence[Event], until: dt.datetime) -> dict[str, tuple[list[Any], int]]:
    """Per person: (present intervals, reconnect count). An open interval ends at `until`."""
    found: dict[str, tuple[list[Any], int]] = {}
    open_since: dict[str, dt.datetime] = {}
    dropped: set[str] = set()
    for event in sorted(events, key=lambda e: e.at):
        spans, reconnects = found.setdefault(event.person, ([], 0))
        if event.event in STARTS and event.person not in open_since:
            open_since[event.person] = event.at
            if event.person in dropped:
                found[event.person] = (spans, reconnects + 1)
                dropped.discard(event.person)
        elif event.event in ENDS and event.person in open_since:
            spans.append((open_since.pop(event.person), event.at))
            if event.event == "disconnected":
                dropped.add(event.person)
        elif event.event in ("left", "removed"):
            dropped.discard(event.person)
    for person, since in open_since.items():
        if until > since:
            found[person][0].append((since, until))
    return found


def _overlap(a: tuple[dt.datetime, dt.datetime], b: tuple[dt.datetime, dt.datetime]) -> float:
    start, end = max(a[0], b[0]), min(a[1], b[1])
    return max(0.0, (end - start).total_seconds())


def session_attendance(
    events: Sequence[Event], phases: Sequence[PhaseSpan], until: dt.datetime
) -> dict[str, Presence]:
    """Everyone's presence in one session, per phase and in total without breaks.

    CLINICAL.md 6 counts minutes present excluding breaks. Every minute admitted to the room
    counts, including those before the facilitator pressed Start (the patient was in the
    session with the clinician); only the break phases are taken out.
    """
    result: dict[str, Presence] = {}
    started = min((phase.start for phase in phases), default=None)
    for person, (spans, reconnects) in intervals(events, until).items():
        presence = Presence(person, spans, reconnects)
        presence.total_s = sum((end - start).total_seconds() for start, end in spans)
        for phase in phases:
            seconds = sum(_overlap(span, (phase.start, phase.end)) for span in spans)
            presence.per_phase_s[phase.index] = seconds
            if phase.kind == "break":
                presence.excluded_break_s += seconds
                presence.total_s -= seconds
        if started is not None:
            presence.before_start_s = sum(
                _overlap(span, (min(span[0], started), started)) for span in spans
            )
        result[person] = presence
    return result


def phase_spans(clock: Mapping[str, Any] | None, until: dt.datetime) -> list[PhaseSpan]:
    """The phases as they actually ran, from a stored clock's history and current phase."""
    if not clock or not clock.get("phase_started_at"):
        return []
    phases = clock["phases"]
    spans = [
        PhaseSpan(
            int(item["index"]),
            item["kind"],
            phases[int(item["index"])]["title"] if int(item["index"]) < len(phases) else "",
            dt.datetime.fromisoformat(item["started_at"]),
            dt.datetime.fromisoformat(item["ended_at"]),
        )
        for item in clock.get("history", [])
    ]
    if clock.get("status") != "ended":
        index = int(clock["index"])
        spans.append(
            PhaseSpan(
                index,
                phases[index]["kind"],
                phases[index]["title"],
                dt.datetime.fromisoformat(clock["phase_started_at"]),
                until,
            )
        )
    return spans


@dataclass(frozen=True, slots=True)
class WeeklyTotal:
    """One patient's week against the program's threshold."""

    patient_id: str
    hours: float
    days_meeting_daily: int
    threshold: str
    below: bool


def weekly(
    minutes_by_day: Mapping[str, Mapping[dt.date, float]],
    *,
    adolescent: Mapping[str, bool],
    substance_use: bool,
) -> list[WeeklyTotal]:
    """Each patient's week: hours, and whether they fall below the IOP threshold."""
    totals = []
    for patient_id, days in minutes_by_day.items():
        hours = round(sum(days.values()) / 60, 2)
        full_days = sum(1 for minutes in days.values() if minutes >= SUD_DAILY_HOURS * 60)
        if substance_use:
            threshold = f"{SUD_DAILY_HOURS:g} hours on {SUD_DAYS} days"
            below = full_days < SUD_DAYS
        else:
            needed = ADOLESCENT_WEEKLY_HOURS if adolescent.get(patient_id) else ADULT_WEEKLY_HOURS
            threshold = f"{needed:g} hours"
            below = hours < needed
        totals.append(WeeklyTotal(patient_id, hours, full_days, threshold, below))
    return sorted(totals, key=lambda t: (not t.below, t.hours))


def by_day(
    sessions: Iterable[tuple[dt.date, Mapping[str, Presence]]],
) -> dict[str, dict[dt.date, float]]:
    """Sum each person's minutes per calendar day across sessions."""
    days: dict[str, dict[dt.date, float]] = {}
    for day, presences in sessions:
        for person, presence in presences.items():
            bucket = days.setdefault(person, {})
            bucket[day] = bucket.get(day, 0.0) + presence.total_s / 60
    return days
