"""Weekly group schedules and the session occurrences they produce."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ScheduleError(ValueError):
    """A schedule slot or time zone that cannot be used."""


@dataclass(frozen=True, slots=True, order=True)
class WeeklySlot:
    """One weekly meeting: a weekday and local start and end times."""

    weekday: int  # Monday = 0, as datetime.weekday()
    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ScheduleError(f"weekday must be 0-6 (Monday=0), got {self.weekday}")
        if self.end <= self.start:
            raise ScheduleError("a session must end after it starts on the same day")

    def to_json(self) -> dict[str, str]:
        """The stored and API form: {"day": "mon", "start": "18:00", "end": "21:00"}."""
        return {
            "day": WEEKDAYS[self.weekday],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> WeeklySlot:
        """Parse the stored and API form."""
        day = str(data.get("day", "")).lower()
        if day not in WEEKDAYS:
            raise ScheduleError(f"day must be one of {', '.join(WEEKDAYS)}")
        return cls(WEEKDAYS.index(day), parse_time(data.get("start")), parse_time(data.get("end")))


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One scheduled meeting, in UTC."""

    starts_at: dt.datetime
    ends_at: dt.datetime


def parse_time(raw: object) -> dt.time:
    """Parse a 24-hour HH:MM local time."""
    match = _TIME.match(str(raw)) if raw is not None else None
    if match is None:
        raise ScheduleError(f"time must be HH:MM (24-hour), got {raw!r}")
    return dt.time(int(match.group(1)), int(match.group(2)))


def zone(name: str) -> ZoneInfo:
    """An IANA time zone such as America/Los_Angeles."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}") from None


def check_no_overlap(slots: Sequence[WeeklySlot]) -> None:
    """Refuse two slots of one group that overlap on the same weekday."""
    ordered = sorted(slots)
    for first, second in zip(ordered, ordered[1:], strict=False):
        if first.weekday == second.weekday and second.start < first.end:
            raise ScheduleError(f"two sessions overlap on {WEEKDAYS[first.weekday]}")


def occurrences(
    slots: Iterable[WeeklySlot],
    time_zone: str,
    first_day: dt.date,
    last_day: dt.date,
) -> Iterator[Occurrence]:
    """Every meeting from `first_day` to `last_day` inclusive, local dates, in order.

    Local wall-clock times are kept across daylight-saving changes: a group at 18:00 in
    Los Angeles meets at 18:00 local in both PST and PDT.
    """
    tz = zone(time_zone)
    by_day: dict[int, list[WeeklySlot]] = {}
    for slot in sorted(slots):
        by_day.setdefault(slot.weekday, []).append(slot)
    day = first_day
    while day <= last_day:
        for slot in by_day.get(day.weekday(), ()):
            start = _to_utc(dt.datetime.combine(day, slot.start), tz)
            end = _to_utc(dt.datetime.combine(day, slot.end), tz)
            yield Occurrence(start, end)
        day += dt.timedelta(days=1)


def _to_utc(local: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    # zoneinfo reads a wall time in the spring-forward gap with the offset before the
    # change (fold=0), which lands it after the gap, as the clocks themselves do.
    return local.replace(tzinfo=tz).astimezone(dt.UTC)
