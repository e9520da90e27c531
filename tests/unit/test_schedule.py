import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms.schedule import (
    ScheduleError,
    WeeklySlot,
    check_no_overlap,
    occurrences,
    parse_time,
)

EVENING = [
    WeeklySlot.from_json({"day": day, "start": "18:00", "end": "21:00"})
    for day in ("mon", "tue", "wed", "fri")
]


def test_evening_group_meets_four_times_a_week_at_six_pm_pacific() -> None:
    found = list(
        occurrences(EVENING, "America/Los_Angeles", dt.date(2026, 11, 23), dt.date(2026, 11, 29))
    )
    assert [o.starts_at.isoformat() for o in found] == [
        "2026-11-24T02:00:00+00:00",  # Mon 18:00 PST
        "2026-11-25T02:00:00+00:00",
        "2026-11-26T02:00:00+00:00",
        "2026-11-28T02:00:00+00:00",  # Fri
    ]
    assert all(o.ends_at - o.starts_at == dt.timedelta(hours=3) for o in found)


def test_wall_clock_time_holds_across_the_daylight_saving_change() -> None:
    # 2027-03-14: clocks in Los Angeles spring forward; the Monday group is still at 18:00.
    found = list(
        occurrences(EVENING, "America/Los_Angeles", dt.date(2027, 3, 12), dt.date(2027, 3, 15))
    )
    assert [o.starts_at.hour for o in found] == [2, 1]  # 18:00 PST = 02:00Z; PDT = 01:00Z


def test_a_slot_in_the_spring_forward_gap_starts_after_the_gap() -> None:
    slot = WeeklySlot.from_json({"day": "sun", "start": "02:30", "end": "04:00"})
    (found,) = occurrences(
        [slot], "America/Los_Angeles", dt.date(2027, 3, 14), dt.date(2027, 3, 14)
    )
    assert found.starts_at == dt.datetime(2027, 3, 14, 10, 30, tzinfo=dt.UTC)  # 03:30 PDT


@pytest.mark.parametrize("raw", ["24:00", "7:00", "18:60", "", None, "six"])
def test_bad_times_are_refused(raw: object) -> None:
    with pytest.raises(ScheduleError):
        parse_time(raw)


def test_end_must_follow_start_and_day_must_be_known() -> None:
    with pytest.raises(ScheduleError):
        WeeklySlot.from_json({"day": "mon", "start": "21:00", "end": "18:00"})
    with pytest.raises(ScheduleError):
        WeeklySlot.from_json({"day": "funday", "start": "18:00", "end": "21:00"})


def test_overlapping_slots_on_one_day_are_refused() -> None:
    with pytest.raises(ScheduleError):
        check_no_overlap(
            [
                WeeklySlot.from_json({"day": "mon", "start": "18:00", "end": "21:00"}),
                WeeklySlot.from_json({"day": "mon", "start": "20:00", "end": "22:00"}),
            ]
        )
    check_no_overlap(EVENING)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ScheduleError):
        list(occurrences(EVENING, "Mars/Olympus_Mons", dt.date(2026, 1, 1), dt.date(2026, 1, 2)))


@given(
    first=st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2035, 12, 31)),
    days=st.integers(min_value=0, max_value=60),
    tz=st.sampled_from(["America/Los_Angeles", "America/New_York", "UTC", "Pacific/Honolulu"]),
)
def test_occurrences_are_ordered_three_hours_long_and_on_the_right_local_days(
    first: dt.date, days: int, tz: str
) -> None:
    from zoneinfo import ZoneInfo

    found = list(occurrences(EVENING, tz, first, first + dt.timedelta(days=days)))
    assert found == sorted(found, key=lambda o: o.starts_at)
    for o in found:
        local = o.starts_at.astimezone(ZoneInfo(tz))
        assert (local.hour, local.minute) == (18, 0)
        assert local.weekday() in (0, 1, 2, 4)
        assert first <= local.date() <= first + dt.timedelta(days=days)
        assert o.ends_at - o.starts_at == dt.timedelta(hours=3)
    assert json_round_trip_is_identity()


def json_round_trip_is_identity() -> bool:
    return all(WeeklySlot.from_json(slot.to_json()) == slot for slot in EVENING)
