"""The care domain: reliable change, remission, weeks in program, the outcomes table's
order, and what makes a valid aftercare plan and its patient copy."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care import aftercare, outcomes
from care.outcomes import Change, Score

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 2, 18, tzinfo=dt.UTC)


def test_care_imports_no_web_media_storage_or_bus_library() -> None:
    probe = (
        "import sys, care.outcomes, care.aftercare\n"
        "print(','.join(m for m in ('aiohttp','aiortc','sqlalchemy','av','asyncpg','redis')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""


def test_the_jacobson_truax_index_with_the_stated_constants_gives_the_published_thresholds() -> (
    None
):
    phq9 = outcomes.reliable_change_index(outcomes.PHQ9_SD, outcomes.PHQ9_RELIABILITY)
    gad7 = outcomes.reliable_change_index(outcomes.GAD7_SD, outcomes.GAD7_RELIABILITY)
    assert round(phq9, 2) == 5.24 and round(gad7, 2) == 3.76
    assert outcomes.whole_point_threshold(phq9) == outcomes.RELIABLE_CHANGE_POINTS["phq9"] == 6
    assert outcomes.whole_point_threshold(gad7) == outcomes.RELIABLE_CHANGE_POINTS["gad7"] == 4
    with pytest.raises(ValueError):
        outcomes.reliable_change_index(5.0, 1.0)


@pytest.mark.parametrize(
    ("measure", "first", "latest", "expected"),
    [
        ("phq9", 18, 12, Change.IMPROVED),  # exactly 6 down
        ("phq9", 18, 13, Change.NO_CHANGE),  # 5 down is within measurement error
        ("phq9", 8, 14, Change.WORSE),
        ("phq9", 8, 13, Change.NO_CHANGE),
        ("gad7", 12, 8, Change.IMPROVED),
        ("gad7", 12, 9, Change.NO_CHANGE),
        ("gad7", 5, 9, Change.WORSE),
        ("gad7", None, 9, Change.NOT_ENOUGH),
    ],
)
def test_reliable_change_is_classified_at_the_whole_point_thresholds(
    measure: str, first: int | None, latest: int | None, expected: Change
) -> None:
    assert outcomes.classify(measure, first, latest) is expected


@given(st.integers(0, 27), st.integers(0, 27))
def test_improvement_and_deterioration_are_mirror_images(first: int, latest: int) -> None:
    forward = outcomes.classify("phq9", first, latest)
    backward = outcomes.classify("phq9", latest, first)
    mirror = {Change.IMPROVED: Change.WORSE, Change.WORSE: Change.IMPROVED}
    assert backward is mirror.get(forward, forward)


def test_a_reliable_worsening_on_either_measure_outranks_an_improvement() -> None:
    assert outcomes.overall([Change.IMPROVED, Change.WORSE]) is Change.WORSE
    assert outcomes.overall([Change.IMPROVED, Change.NO_CHANGE]) is Change.IMPROVED
    assert outcomes.overall([Change.IMPROVED, Change.NOT_ENOUGH]) is Change.IMPROVED
    assert outcomes.overall([Change.NOT_ENOUGH, Change.NOT_ENOUGH]) is Change.NOT_ENOUGH


def test_a_measure_summary_takes_the_first_and_latest_by_time_not_by_order_given() -> None:
    scores = [
        Score(T0 + dt.timedelta(days=7), 9),
        Score(T0, 20),
        Score(T0 + dt.timedelta(days=3), 15),
    ]
    summary = outcomes.summarize("phq9", scores)
    assert (summary.first and summary.first.total, summary.latest and summary.latest.total) == (
        20,
        9,
    )
    assert summary.change == -11 and summary.marker is Change.IMPROVED
    single = outcomes.summarize("phq9", [Score(T0, 3)])
    assert single.change is None and single.marker is Change.NOT_ENOUGH
    assert outcomes.in_remission(single) and not outcomes.in_remission(summary)
    assert outcomes.summarize("gad7", []).first is None


def test_weeks_in_program_count_the_first_week_as_week_one() -> None:
    start = dt.date(2026, 11, 2)
    assert outcomes.weeks_in_program(start, start) == 1
    assert outcomes.weeks_in_program(start, start + dt.timedelta(days=6)) == 1
    assert outcomes.weeks_in_program(start, start + dt.timedelta(days=7)) == 2
    assert outcomes.weeks_in_program(start, start - dt.timedelta(days=1)) == 0
    assert outcomes.weeks_in_program(None, start) is None


def test_the_last_full_week_is_the_monday_to_sunday_before_this_one() -> None:
    assert outcomes.last_full_week(dt.date(2026, 12, 4)) == dt.date(2026, 11, 23)  # a Friday
    assert outcomes.last_full_week(dt.date(2026, 11, 30)) == dt.date(2026, 11, 23)  # Monday
    assert outcomes.last_full_week(dt.date(2026, 11, 29)) == dt.date(2026, 11, 16)  # Sunday


def _row(name: str, phq: tuple[int, ...], hours: float | None) -> outcomes.PatientOutcome:
    scores = [Score(T0 + dt.timedelta(days=i), total) for i, total in enumerate(phq)]
    return outcomes.PatientOutcome(
        patient_id=name.lower(),
        name=name,
        phq9=outcomes.summarize("phq9", scores),
        gad7=outcomes.summarize("gad7", []),
        weeks=3,
        attendance=None if hours is None else outcomes.WeekAttendance(hours, "9 hours", hours < 9),
    )


def test_rows_sort_by_any_column_with_missing_values_last_either_way() -> None:
    rows = [_row("Blake", (8, 15), 10.0), _row("avery", (18, 4), None), _row("Cam", (10,), 2.0)]
    assert [r.name for r in outcomes.sort_rows(rows)] == ["Blake", "avery", "Cam"]
    assert [r.name for r in outcomes.sort_rows(rows, "name")] == ["avery", "Blake", "Cam"]
    assert [r.name for r in outcomes.sort_rows(rows, "phq9")] == ["avery", "Blake", "Cam"]
    assert [r.name for r in outcomes.sort_rows(rows, "phq9", descending=True)] == [
        "Blake",
        "avery",
        "Cam",
    ]
    assert [r.name for r in outcomes.sort_rows(rows, "attendance", True)] == [
        "Blake",
        "Cam",
        "avery",
    ]
    with pytest.raises(ValueError):
        outcomes.sort_rows(rows, "legal_name")


TODAY = dt.date(2026, 12, 4)
GOOD = {
    "step_down": "standard_outpatient",
    "fu1_date": "2026-12-18",
    "fu1_provider": "Example clinic",
    "fu1_phone": "555.555.0142",
    "triggers": "Payday\nweekends",
    "local_crisis_line": "",
}


def test_a_valid_plan_is_normalised_and_round_trips_through_json() -> None:
    steps = (("warning_signs", "Not sleeping"), ("internal_coping", ""))
    plan = aftercare.parse_plan(
        GOOD, TODAY, program_phone="(555) 010-0100", safety_plan=steps, safety_plan_version=3
    )
    assert plan.follow_ups == (
        aftercare.FollowUp(dt.date(2026, 12, 18), "Example clinic", "(555) 555-0142"),
    )
    assert plan.safety_plan == (("warning_signs", "Not sleeping"),)  # empty steps left out
    assert plan.step_down_label == "Standard outpatient care"
    assert aftercare.from_json(plan.to_json()) == plan


def test_every_bad_field_is_named_with_its_reason() -> None:
    form = {
        "step_down": "spa",
        "fu1_date": "18/12/2026",
        "fu1_provider": "",
        "fu1_phone": "911",
        "fu2_date": "2020-01-01",
        "fu2_provider": "Old",
        "fu2_phone": "(555) 555-0142",
        "fu3_date": "2031-01-01",
        "fu3_provider": "Far",
        "fu3_phone": "(555) 555-0142",
        "coping": "x" * 2001,
        "people": "tab\x00",
        "local_crisis_line": "12345",
    }
    with pytest.raises(aftercare.AftercareInvalid) as caught:
        aftercare.parse_plan(form, TODAY, program_phone="(555) 010-0100")
    errors = caught.value.errors
    assert errors["step_down"] == "choose a step-down level from the list"
    assert errors["fu1_date"] == "enter the date as YYYY-MM-DD"
    assert errors["fu1_provider"] == "name the provider or service"
    assert "US phone number" in errors["fu1_phone"]
    assert errors["fu2_date"] == "must be at most 30 days ago"
    assert errors["fu3_date"] == "must be within the next two years"
    assert errors["coping"] == "must be at most 2000 characters"
    assert errors["people"] == "must not contain control characters"
    assert "local_crisis_line" in errors


def test_none_or_other_needs_a_note() -> None:
    with pytest.raises(aftercare.AftercareInvalid) as caught:
        aftercare.parse_plan({"step_down": "none_other"}, TODAY, program_phone="x")
    assert set(caught.value.errors) == {"step_down_note"}
    plan = aftercare.parse_plan(
        {"step_down": "none_other", "step_down_note": "Moving out of state"},
        TODAY,
        program_phone="x",
    )
    assert plan.follow_ups == () and plan.safety_plan == ()


def test_the_patient_copy_always_leads_with_988_and_911_and_carries_the_safety_plan() -> None:
    plan = aftercare.parse_plan(
        GOOD,
        TODAY,
        program_phone="(555) 010-0100",
        safety_plan=(("warning_signs", "Not sleeping\nPacing"),),
        safety_plan_version=1,
    )
    text = aftercare.as_text(plan, program_name="Demo IOP", version=2, recorded_on=TODAY)
    lines = text.splitlines()
    assert lines[0] == "My aftercare plan - Demo IOP"
    crisis = text.index("IF YOU ARE IN CRISIS")
    assert crisis < text.index("988") < text.index("911") < text.index("NEXT LEVEL OF CARE")
    assert "Demo IOP: (555) 010-0100" in text
    assert "Fri Dec 18, 2026: Example clinic, (555) 555-0142" in text
    assert "    Payday" in lines and "    weekends" in lines
    assert "1. Warning signs:" in text and "    Pacing" in lines
    bare = aftercare.parse_plan({"step_down": "php"}, TODAY, program_phone="(555) 010-0100")
    text = aftercare.as_text(bare, program_name="Demo IOP", version=1, recorded_on=TODAY)
    assert "None booked yet" in text and "No safety plan was on file" in text
