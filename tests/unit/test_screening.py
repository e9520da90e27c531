"""The instruments, exhaustively: every C-SSRS path, every band boundary, every bad input."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crisis.screening import (
    Score,
    SubstanceUse,
    cssrs_level,
    cssrs_result,
    higher,
    phq9_opens_cssrs,
    score_gad7,
    score_phq9,
)


def _items(total: int, count: int) -> list[int]:
    items = [0] * count
    for i in range(total):
        items[i % count] += 1
    return items


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately severe"),
        (19, "moderately severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_bands_at_every_boundary(total: int, band: str) -> None:
    assert score_phq9(_items(total, 9)) == Score(total, band)


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_bands_at_every_boundary(total: int, band: str) -> None:
    assert score_gad7(_items(total, 7)) == Score(total, band)


@pytest.mark.parametrize(
    ("scorer", "items", "message"),
    [
        (score_phq9, [0] * 8, "PHQ-9 has 9 items, got 8"),
        (score_phq9, [0] * 10, "PHQ-9 has 9 items, got 10"),
        (score_phq9, [0] * 8 + [4], "PHQ-9 item 9 must be 0, 1, 2 or 3, got 4"),
        (score_phq9, [-1] + [0] * 8, "PHQ-9 item 1 must be 0, 1, 2 or 3, got -1"),
        (score_gad7, [0] * 6, "GAD-7 has 7 items, got 6"),
        (score_gad7, [0, 0, 0, "1", 0, 0, 0], "GAD-7 item 4 must be 0, 1, 2 or 3, got '1'"),
        (score_gad7, [0, 0, 0, True, 0, 0, 0], "GAD-7 item 4 must be 0, 1, 2 or 3, got True"),
    ],
)
def test_wrong_counts_and_items_say_which(scorer, items, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as caught:
        scorer(items)
    assert str(caught.value) == message


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=9, max_size=9))
def test_phq9_total_is_the_sum_and_always_banded(items: list[int]) -> None:
    score = score_phq9(items)
    assert score.total == sum(items) and score.band


def _expected(q1, q2, q3, q4, q5, q6, recent):  # type: ignore[no-untyped-def]
    if q4 or q5 or (q6 and recent):
        return "high"
    if q3 or q6:
        return "moderate"
    if q1 or q2:
        return "low"
    return "none"


def test_every_valid_cssrs_path_gets_the_screeners_level() -> None:
    checked = 0
    for q1, q2, q6 in itertools.product([False, True], repeat=3):
        followups = itertools.product([False, True], repeat=3) if q2 else [(None, None, None)]
        for q3, q4, q5 in followups:
            for recent in [False, True] if q6 else [None]:
                level = cssrs_level(
                    q1=q1, q2=q2, q3=q3, q4=q4, q5=q5, q6=q6, q6_past_3_months=recent
                )
                assert level == _expected(q1, q2, q3, q4, q5, q6, recent)
                checked += 1
    assert checked == 2 * (1 * 2 + 8 * 2) + 2 * (1 * 1 + 8 * 1)  # every combination


def test_the_rule_that_decided_is_recorded() -> None:
    assert cssrs_result(q1=True, q2=False, q6=False).rule.startswith("Q1/Q2")
    assert cssrs_result(q1=True, q2=True, q3=False, q4=True, q5=False, q6=False).rule.startswith(
        "Q4"
    )
    assert cssrs_result(q1=False, q2=False, q6=True, q6_past_3_months=False).level == "moderate"


@pytest.mark.parametrize(
    "answers",
    [
        {"q1": True, "q2": True, "q6": False},  # Q3-Q5 missing
        {"q1": True, "q2": True, "q3": False, "q4": False, "q6": False},  # Q5 missing
        {"q1": True, "q2": False, "q3": False, "q6": False},  # Q3 never asked
        {"q1": False, "q2": False, "q6": True},  # 3-month question missing
        {"q1": False, "q2": False, "q6": False, "q6_past_3_months": True},  # not asked
    ],
)
def test_answers_the_skip_logic_forbids_or_requires_raise(answers: dict[str, bool]) -> None:
    with pytest.raises(ValueError):
        cssrs_level(**answers)


def test_item_nine_opens_the_cssrs_and_levels_compare() -> None:
    assert phq9_opens_cssrs([0] * 8 + [1])
    assert not phq9_opens_cssrs([3] * 8 + [0])
    assert higher("low", "high") == "high" and higher("moderate", "none") == "moderate"
    with pytest.raises(ValueError):
        SubstanceUse(True, 11, False)
