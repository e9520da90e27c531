"""The daily mood check: what a patient may enter, which entries ask for a review, what
staff see of the days since the last session, and when a day's reminder is due.

A check is one short screen a day (mood, anxiety, sleep, and urges in substance-use
programs). It is not a screener and never opens a crisis event by itself: a very low mood
or a very strong urge asks the care team for a review, the same way a severe PHQ-9 total
does, and the page always shows 988 and the private help press for anything urgent.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SCALE = range(0, 11)  # mood, anxiety and urges: 0-10
SCORE = re.compile(r"[0-9]{1,2}")  # ASCII digits only: "²" is a digit to str.isdigit
# A day's mood at or below this, or urges at or above that, asks for a review (issue 18).
MOOD_REVIEW_AT_OR_BELOW = 2
URGES_REVIEW_AT_OR_ABOVE = 9
SLEEP_MAX_HOURS = 24.0
NOTE_MAX = 500
REMINDER_KIND = "mood_reminder"
DEFAULT_REMINDER_TIME = dt.time(19, 0)
# Before a patient's first session there is no "last session": staff see the last week.
FIRST_SESSION_LOOK_BACK = dt.timedelta(days=7)


class MoodInputError(ValueError):
    """A check that cannot be stored; `errors` maps each field to what to fix (no values)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(errors.items())))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class MoodEntry:
    """One day's check, on the program's calendar day."""

    day: dt.date
    mood: int
    anxiety: int
    sleep_hours: float
    urges: int | None = None  # asked only in substance-use programs
    note: str = ""

    def __post_init__(self) -> None:
        for name in ("mood", "anxiety"):
            if getattr(self, name) not in SCALE:
                raise ValueError(f"{name} out of range")
        if self.urges is not None and self.urges not in SCALE:
            raise ValueError("urges out of range")
        if not 0 <= self.sleep_hours <= SLEEP_MAX_HOURS:
            raise ValueError("sleep_hours out of range")
        if len(self.note) > NOTE_MAX:
            raise ValueError("note too long")

    def to_json(self) -> dict[str, Any]:
        """The values as sealed at rest (the day is a plain column beside them)."""
        return {
            "mood": self.mood,
            "anxiety": self.anxiety,
            "sleep_hours": self.sleep_hours,
            "urges": self.urges,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, day: dt.date, data: Mapping[str, Any]) -> MoodEntry:
        """An entry from its stored values."""
        return cls(
            day=day,
            mood=int(data["mood"]),
            anxiety=int(data["anxiety"]),
            sleep_hours=float(data["sleep_hours"]),
            urges=None if data.get("urges") is None else int(data["urges"]),
            note=str(data.get("note") or ""),
        )


def _score(raw: str | None, field: str, label: str, errors: dict[str, str]) -> int:
    text = (raw or "").strip()
    if not SCORE.fullmatch(text) or int(text) not in SCALE:
        errors[field] = f"Choose your {label} from 0 to 10."
        return 0
    return int(text)


def _sleep(raw: str | None, errors: dict[str, str]) -> float:
    text = (raw or "").strip().replace(",", ".")
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    # Half hours are as precise as anyone remembers a night: 6.25 becomes 6.5.
    if not math.isfinite(hours) or not 0 <= hours <= SLEEP_MAX_HOURS:
        errors["sleep_hours"] = "Type how many hours you slept, from 0 to 24 (like 6.5)."
        return 0.0
    return math.floor(hours * 2 + 0.5) / 2


def parse_entry(form: Mapping[str, str], day: dt.date, *, substance_use: bool) -> MoodEntry:
    """A day's check from a form, or MoodInputError naming every field to fix."""
    errors: dict[str, str] = {}
    mood = _score(form.get("mood"), "mood", "mood", errors)
    anxiety = _score(form.get("anxiety"), "anxiety", "anxiety", errors)
    sleep = _sleep(form.get("sleep_hours"), errors)
    urges: int | None = None
    if substance_use:
        urges = _score(form.get("urges"), "urges", "urges to use", errors)
    elif (form.get("urges") or "").strip():
        errors["urges"] = "Urges are asked only in substance-use programs."
    note = (form.get("note") or "").strip().replace("\r\n", "\n")
    if len(note) > NOTE_MAX:
        errors["note"] = f"Keep the note to {NOTE_MAX} characters."
    elif any(ord(c) < 32 and c not in "\n\t" for c in note):
        errors["note"] = "The note has characters that cannot be stored: retype it."
    if errors:
        raise MoodInputError(errors)
    return MoodEntry(day, mood, anxiety, sleep, urges, note)


def review_reasons(entry: MoodEntry) -> tuple[str, ...]:
    """Why this day's check asks the care team for a review (empty: it does not)."""
    reasons = []
    if entry.mood <= MOOD_REVIEW_AT_OR_BELOW:
        reasons.append(f"daily mood {entry.mood} of 10 (0-{MOOD_REVIEW_AT_OR_BELOW})")
    if entry.urges is not None and entry.urges >= URGES_REVIEW_AT_OR_ABOVE:
        reasons.append(f"daily urges {entry.urges} of 10 ({URGES_REVIEW_AT_OR_ABOVE}-10)")
    return tuple(reasons)


def local_day(at: dt.datetime, zone: dt.tzinfo) -> dt.date:
    """The calendar day `at` falls on in the program's time zone (one check per day)."""
    return at.astimezone(zone).date()


# Since the last session -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """The average and range of one measure over some days."""

    average: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        """The spread of `values`, or None when there are none."""
        if not values:
            return None
        return cls(round(sum(values) / len(values), 1), min(values), max(values))


@dataclass(frozen=True, slots=True)
class Summary:
    """The daily checks since the last session, as staff see them beside a patient."""

    since: dt.date | None
    count: int
    mood: Spread | None
    anxiety: Spread | None
    sleep: Spread | None
    urges: Spread | None
    lowest_mood: tuple[int, dt.date] | None
    reviews: int
    first_session: bool = False  # no earlier session: `since` starts a short look back

    def text(self) -> str:
        """One line for the staff room view: counts and numbers only, never the notes."""
        if self.since is None:
            start = "Daily check-ins so far"
        elif self.first_session:
            start = f"Since {self.since:%a %b} {self.since.day} (no earlier session)"
        else:
            start = f"Since last session ({self.since:%a %b} {self.since.day})"
        if self.count == 0:
            return f"{start}: no daily check-ins"
        parts = [f"{self.count} daily check-in{'s' if self.count != 1 else ''}"]
        for label, spread, unit in (
            ("mood", self.mood, ""),
            ("anxiety", self.anxiety, ""),
            ("sleep", self.sleep, " h"),
            ("urges", self.urges, ""),
        ):
            if spread is not None:
                parts.append(
                    f"{label} avg {_num(spread.average)}{unit} "
                    f"({_num(spread.low)}-{_num(spread.high)})"
                )
        if self.lowest_mood is not None:
            value, day = self.lowest_mood
            parts.append(f"lowest mood {value} on {day:%a} {day.day}")
        if self.reviews:
            parts.append(f"{self.reviews} review flag{'s' if self.reviews != 1 else ''}")
        return f"{start}: " + " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The summary for the staff-only room data."""
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "count": self.count,
            "reviews": self.reviews,
            "first_session": self.first_session,
            "text": self.text(),
        }


def _num(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def summarize(
    entries: Iterable[MoodEntry], since: dt.date | None, *, first_session: bool = False
) -> Summary:
    """The checks on days after `since` (the last session's day), or all when None;
    `first_session` when there was no earlier session and `since` only looks back a week."""
    chosen = sorted((e for e in entries if since is None or e.day > since), key=lambda e: e.day)
    lowest = min(chosen, key=lambda e: (e.mood, e.day), default=None)
    return Summary(
        since=since,
        count=len(chosen),
        mood=Spread.of([e.mood for e in chosen]),
        anxiety=Spread.of([e.anxiety for e in chosen]),
        sleep=Spread.of([e.sleep_hours for e in chosen]),
        urges=Spread.of([e.urges for e in chosen if e.urges is not None]),
        lowest_mood=None if lowest is None else (lowest.mood, lowest.day),
        reviews=sum(1 for e in chosen if review_reasons(e)),
        first_session=first_session,
    )


# The daily reminder ------------------------------------------------------------------------


def parse_reminder_time(text: str) -> dt.time:
    """A reminder's local time from "HH:MM" (24-hour), or MoodInputError."""
    raw = text.strip()
    try:
        hours, minutes = raw.split(":")
        at = dt.time(int(hours), int(minutes))
    except ValueError:
        raise MoodInputError({"reminder_time": "Type a time like 19:00."}) from None
    if len(hours) not in (1, 2) or len(minutes) != 2:
        raise MoodInputError({"reminder_time": "Type a time like 19:00."})
    return at


def reminder_due(now_local: dt.datetime, at: dt.time) -> bool:
    """True once the day's reminder time has come (the caller sends at most one a day)."""
    return now_local.time() >= at


def reminder_body(
    notification_id: str,
    program_id: str,
    patient_id: str,
    day: dt.date,
    at: dt.datetime,
    url: str,
) -> dict[str, Any]:
    """The webhook's reminder: opaque ids, the day and a link that needs the patient's own
    sign-in. No name, phone or answer (CLINICAL.md section 8)."""
    return {
        "id": notification_id,
        "kind": REMINDER_KIND,
        "program_id": program_id,
        "patient_id": patient_id,
        "day": day.isoformat(),
        "at": at.astimezone(dt.UTC).isoformat(),
        "url": url,
    }
