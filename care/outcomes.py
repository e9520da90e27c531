"""Measurement-based care: first and latest PHQ-9/GAD-7, reliable change, remission, weeks
in the program, and last full week's attendance against the program's threshold.

Reliable change follows Jacobson & Truax (1991, J Consult Clin Psychol 59:12-19): a
difference between two scores is reliable (unlikely, p < .05, to be measurement error) when
it exceeds RCI = 1.96 * SD * sqrt(2 * (1 - r)), where SD is the pre-treatment standard
deviation of the measure and r its reliability.

The whole-point thresholds used here are the ones NHS Talking Therapies (formerly IAPT)
publishes for these two measures and which US measurement-based-care programs commonly
borrow: a change of 6 or more points on PHQ-9 and 4 or more on GAD-7 is reliable. The
reliability constants are the internal consistencies reported by the measures' authors
(PHQ-9 Cronbach's alpha 0.89, Kroenke, Spitzer & Williams 2001, J Gen Intern Med 16:606;
GAD-7 alpha 0.92, Spitzer, Kroenke, Williams & Lowe 2006, Arch Intern Med 166:1092). The
SDs (5.7 and 4.8) are typical pre-treatment SDs of treatment-seeking outpatient samples,
given so the derivation can be checked: with them the index is 5.24 and 3.76 points, and
on whole-point scales the smallest change that exceeds it is 6 and 4, the published
thresholds. A program that has its own baseline SD can compute its own index with
`reliable_change_index`; the thresholds below stay the published ones.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

PHQ9_RELIABILITY = 0.89
PHQ9_SD = 5.7
GAD7_RELIABILITY = 0.92
GAD7_SD = 4.8
# The published whole-point thresholds (see the module docstring).
RELIABLE_CHANGE_POINTS = {"phq9": 6, "gad7": 4}
# PHQ-9 below 5 is the "minimal" band (CLINICAL.md 4): the usual definition of remission.
PHQ9_REMISSION_BELOW = 5
MEASURES = ("phq9", "gad7")


def reliable_change_index(sd: float, reliability: float) -> float:
    """The Jacobson-Truax reliable change index: 1.96 * SD * sqrt(2 * (1 - r))."""
    if sd <= 0 or not 0 <= reliability < 1:
        raise ValueError("SD must be positive and reliability in [0, 1)")
    return 1.96 * sd * math.sqrt(2 * (1 - reliability))


def whole_point_threshold(index: float) -> int:
    """The smallest whole-point change that exceeds the index."""
    return math.floor(index) + 1


class Change(StrEnum):
    """How a measure moved between the first and the latest score."""

    IMPROVED = "reliably improved"
    NO_CHANGE = "no reliable change"
    WORSE = "reliably worse"
    NOT_ENOUGH = "not enough scores"


def classify(measure: str, first: int | None, latest: int | None) -> Change:
    """Reliable improvement or deterioration on one measure (lower scores are better)."""
    if measure not in RELIABLE_CHANGE_POINTS:
        raise ValueError(f"unknown measure {measure!r}")
    if first is None or latest is None:
        return Change.NOT_ENOUGH
    threshold = RELIABLE_CHANGE_POINTS[measure]
    if first - latest >= threshold:
        return Change.IMPROVED
    if latest - first >= threshold:
        return Change.WORSE
    return Change.NO_CHANGE


def overall(changes: Iterable[Change]) -> Change:
    """One marker for a patient across measures.

    As NHS Talking Therapies counts it: reliably improved when at least one measure
    improved reliably and none got reliably worse. A reliable worsening on any measure
    comes first, so a mixed picture is never shown as improvement.
    """
    known = [c for c in changes if c is not Change.NOT_ENOUGH]
    if not known:
        return Change.NOT_ENOUGH
    if Change.WORSE in known:
        return Change.WORSE
    if Change.IMPROVED in known:
        return Change.IMPROVED
    return Change.NO_CHANGE


@dataclass(frozen=True, slots=True)
class Score:
    """One scored total of one measure, when it was given."""

    at: dt.datetime
    total: int


@dataclass(frozen=True, slots=True)
class MeasureSummary:
    """First and latest complete score of one measure, and the change between them."""

    measure: str
    first: Score | None
    latest: Score | None
    count: int

    @property
    def change(self) -> int | None:
        """Latest minus first (negative is better); None with fewer than two scores."""
        if self.first is None or self.latest is None or self.count < 2:
            return None
        return self.latest.total - self.first.total

    @property
    def marker(self) -> Change:
        """Reliable improvement, no reliable change, or reliable deterioration."""
        if self.change is None or self.first is None or self.latest is None:
            return Change.NOT_ENOUGH
        return classify(self.measure, self.first.total, self.latest.total)


def summarize(measure: str, scores: Iterable[Score]) -> MeasureSummary:
    """The first and latest of a patient's complete scores of one measure."""
    ordered = sorted(scores, key=lambda s: s.at)
    return MeasureSummary(
        measure,
        ordered[0] if ordered else None,
        ordered[-1] if ordered else None,
        len(ordered),
    )


def in_remission(phq9: MeasureSummary) -> bool:
    """True when the latest PHQ-9 is below 5 (minimal symptoms)."""
    return phq9.latest is not None and phq9.latest.total < PHQ9_REMISSION_BELOW


def weeks_in_program(started_on: dt.date | None, today: dt.date) -> int | None:
    """Which week of the program the patient is in (the first week is week 1)."""
    if started_on is None:
        return None
    if today < started_on:
        return 0
    return (today - started_on).days // 7 + 1


def last_full_week(today: dt.date) -> dt.date:
    """The Monday of the last Monday-to-Sunday week that has ended by `today`."""
    this_monday = today - dt.timedelta(days=today.weekday())
    return this_monday - dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class WeekAttendance:
    """Last full week's hours from the attendance roll-up (rooms/attendance.py)."""

    hours: float
    threshold: str
    below: bool


@dataclass(frozen=True, slots=True)
class PatientOutcome:
    """One row of the program's measurement-based-care view."""

    patient_id: str
    name: str
    phq9: MeasureSummary
    gad7: MeasureSummary
    weeks: int | None
    attendance: WeekAttendance | None  # None: not enrolled in that week

    @property
    def marker(self) -> Change:
        """The patient's overall reliable-change marker."""
        return overall((self.phq9.marker, self.gad7.marker))

    @property
    def remission(self) -> bool:
        """Latest PHQ-9 below 5."""
        return in_remission(self.phq9)


# Sort keys of the table; None values sort last whatever the direction.
SORTS = ("name", "phq9", "gad7", "marker", "weeks", "attendance")
_MARKER_ORDER = {Change.WORSE: 0, Change.NO_CHANGE: 1, Change.IMPROVED: 2, Change.NOT_ENOUGH: 3}


def _key(row: PatientOutcome, sort: str) -> float | str | None:
    if sort == "name":
        return row.name.lower()
    if sort == "phq9":
        return row.phq9.change
    if sort == "gad7":
        return row.gad7.change
    if sort == "marker":
        return _MARKER_ORDER[row.marker]
    if sort == "weeks":
        return row.weeks
    if sort == "attendance":
        return None if row.attendance is None else row.attendance.hours
    raise ValueError(f"unknown sort {sort!r}")


def sort_rows(
    rows: Sequence[PatientOutcome], sort: str = "marker", descending: bool = False
) -> list[PatientOutcome]:
    """The rows ordered by one column (ties by name); missing values always last."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    by_name = sorted(rows, key=lambda r: (r.name.lower(), r.patient_id))
    present = [r for r in by_name if _key(r, sort) is not None]
    missing = [r for r in by_name if _key(r, sort) is None]
    present.sort(key=lambda r: _key(r, sort), reverse=descending)  # type: ignore[arg-type,return-value]
    return present + missing
