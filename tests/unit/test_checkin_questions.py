"""The check-in's answer-by-answer level, declining the suicide items, and severe totals."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crisis.questions import (
    DECLINED_RULE,
    TALK,
    Plan,
    floor,
    next_question,
    results,
    severe,
    valid_answer,
)
from crisis.screening import LEVELS

ONLY_CSSRS = Plan(phq9=False, gad7=False, cssrs=True, sud=False)


@given(st.lists(st.booleans(), min_size=7, max_size=7))
def test_each_answer_commits_to_a_level_the_finished_screen_never_goes_below(
    yes: list[bool],
) -> None:
    answers: dict[str, str] = {}
    seen = "none"
    while (qid := next_question(ONLY_CSSRS, answers)) is not None:
        answers[qid] = "yes" if yes[len(answers)] else "no"
        level, _rule = floor(answers)
        assert LEVELS.index(level) >= LEVELS.index(seen)  # never goes down as answers land
        seen = level
    finished = results(ONLY_CSSRS, answers)
    level, rule = floor(answers)
    assert level == finished["level"]
    assert level == "none" or rule == finished["rule"]


def test_talking_to_the_clinician_ends_the_suicide_items_at_moderate_or_above() -> None:
    assert valid_answer("cssrs_q1", TALK) and valid_answer("phq9_9", TALK)
    assert not valid_answer("phq9_1", TALK) and not valid_answer("gad7_1", TALK)
    plan = Plan(phq9=True, gad7=True, cssrs=True, sud=True)
    answers = {f"phq9_{n}": "0" for n in range(1, 9)} | {"phq9_9": TALK}
    assert next_question(plan, answers) is None  # nothing after it is asked
    scored = results(plan, answers)
    assert (scored["level"], scored["rule"], scored["declined"]) == (
        "moderate",
        DECLINED_RULE,
        True,
    )
    assert scored["gad7"]["band"] == "not asked" and scored["sud"]["intoxicated_now"] is None
    intent = {"cssrs_q1": "yes", "cssrs_q2": "yes", "cssrs_q3": "no", "cssrs_q4": "yes"}
    assert floor({**intent, "cssrs_q5": TALK})[0] == "high"


def test_severe_totals_use_the_programs_threshold_only_when_stricter() -> None:
    plan = Plan(phq9=True, gad7=False, cssrs=False, sud=False)
    scored = results(plan, {f"phq9_{n}": "2" for n in range(1, 9)} | {"phq9_9": "0"})
    assert scored["phq9"]["total"] == 16 and scored["level"] == "none"
    assert severe(scored, {}) == []
    assert [f["code"] for f in severe(scored, {"phq9": 15})] == ["phq9_severe"]
    assert severe(scored, {"phq9": 27}) == []  # a looser threshold is ignored
