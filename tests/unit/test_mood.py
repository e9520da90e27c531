"""The daily mood check's rules: what may be entered, what asks for a review, the summary
staff see since the last session, the reminder's time and body."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.mood import (
    MoodEntry,
    MoodInputError,
    local_day,
    parse_entry,
    parse_reminder_time,
    reminder_body,
    reminder_due,
    review_reasons,
    summarize,
)

DAY = dt.date(2026, 12, 4)
ROOT = Path(__file__).resolve().parents[2]


def _form(**fields: str) -> dict[str, str]:
    return {"mood": "6", "anxiety": "4", "sleep_hours": "7", **fields}


def test_a_complete_check_is_read_with_half_hour_sleep() -> None:
    entry = parse_entry(_form(sleep_hours="6,3", note="  walked  "), DAY, substance_use=False)
    assert entry == MoodEntry(DAY, 6, 4, 6.5, None, "walked")


def test_every_missing_or_out_of_range_field_is_named() -> None:
    with pytest.raises(MoodInputError):
        parse_entry(_form(mood="\u00b2"), DAY, substance_use=False)  # a digit, not 0-10
    with pytest.raises(MoodInputError) as caught:
        parse_entry({"mood": "11", "anxiety": "-1", "sleep_hours": "25"}, DAY, substance_use=True)
    assert set(caught.value.errors) == {"mood", "anxiety", "sleep_hours", "urges"}
    with pytest.raises(MoodInputError) as caught:
        parse_entry(_form(sleep_hours="nan", note="x" * 501), DAY, substance_use=False)
    assert set(caught.value.errors) == {"sleep_hours", "note"}


def test_urges_are_asked_only_in_substance_use_programs() -> None:
    assert parse_entry(_form(urges="3"), DAY, substance_use=True).urges == 3
    with pytest.raises(MoodInputError) as caught:
        parse_entry(_form(urges="3"), DAY, substance_use=False)
    assert set(caught.value.errors) == {"urges"}


@given(
    st.dictionaries(
        st.sampled_from(["mood", "anxiety", "sleep_hours", "urges", "note"]), st.text(max_size=30)
    ),
    st.booleans(),
)
def test_any_form_is_either_an_entry_or_a_named_error(form: dict[str, str], sud: bool) -> None:
    try:
        entry = parse_entry(form, DAY, substance_use=sud)
    except MoodInputError as exc:
        assert exc.errors and all(isinstance(v, str) for v in exc.errors.values())
    else:
        assert MoodEntry.from_json(DAY, json.loads(json.dumps(entry.to_json()))) == entry


@pytest.mark.parametrize(
    ("mood", "urges", "reviewed"),
    [
        (0, None, True),
        (2, None, True),
        (3, None, False),
        (5, 8, False),
        (5, 9, True),
        (7, 10, True),
    ],
)
def test_a_mood_of_0_to_2_or_urges_of_9_or_10_ask_for_a_review(
    mood: int, urges: int | None, reviewed: bool
) -> None:
    assert bool(review_reasons(MoodEntry(DAY, mood, 5, 7.0, urges))) is reviewed


def test_the_summary_counts_only_days_after_the_last_session() -> None:
    entries = [
        MoodEntry(DAY - dt.timedelta(days=3), 1, 8, 4.0),  # the session's own day: not counted
        MoodEntry(DAY - dt.timedelta(days=2), 2, 7, 5.0),
        MoodEntry(DAY - dt.timedelta(days=1), 6, 3, 7.5),
        MoodEntry(DAY, 7, 2, 8.0),
    ]
    summary = summarize(entries, since=DAY - dt.timedelta(days=3))
    assert summary.count == 3 and summary.reviews == 1
    assert summary.mood is not None and (summary.mood.average, summary.mood.low) == (5.0, 2)
    assert summary.lowest_mood == (2, DAY - dt.timedelta(days=2))
    assert summary.urges is None
    text = summary.text()
    assert text.startswith("Since last session (Tue Dec 1): 3 daily check-ins")
    assert "mood avg 5 (2-7)" in text and "sleep avg 6.8 h (5-8)" in text
    assert "1 review flag" in text
    assert summarize([], DAY).text() == "Since last session (Fri Dec 4): no daily check-ins"
    first = summarize(entries, DAY - dt.timedelta(days=7), first_session=True)
    assert first.count == 4 and first.text().startswith("Since Fri Nov 27 (no earlier session)")
    assert summarize(entries, None).text().startswith("Daily check-ins so far: 4")


def test_the_day_is_the_programs_calendar_day() -> None:
    late = dt.datetime(2026, 12, 5, 6, 30, tzinfo=dt.UTC)  # 22:30 the day before in LA
    assert local_day(late, ZoneInfo("America/Los_Angeles")) == DAY


def test_reminder_time_is_read_and_due_once_the_time_has_come() -> None:
    assert parse_reminder_time("7:05") == dt.time(7, 5)
    for bad in ("", "19", "25:00", "19:5", "19:00:00", "seven"):
        with pytest.raises(MoodInputError):
            parse_reminder_time(bad)
    at = dt.time(19, 0)
    assert not reminder_due(dt.datetime(2026, 12, 4, 18, 59), at)
    assert reminder_due(dt.datetime(2026, 12, 4, 19, 0), at)


def test_the_reminder_carries_ids_and_a_link_only() -> None:
    now = dt.datetime(2026, 12, 4, 3, 0, tzinfo=dt.UTC)
    body = reminder_body("n1", "p1", "pt1", DAY, now, "https://x/mood")
    assert set(body) == {"id", "kind", "program_id", "patient_id", "day", "at", "url"}
    assert body["kind"] == "mood_reminder" and body["url"] == "https://x/mood"


def test_the_care_domain_imports_no_web_or_storage_library() -> None:
    probe = (
        "import sys, care, care.mood\n"
        "print(','.join(m for m in ('aiohttp', 'aiortc', 'sqlalchemy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""
