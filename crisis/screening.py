"""Screening instruments: PHQ-9, GAD-7, the C-SSRS screener and substance-use items.

Pure functions. The public interface (`score_phq9`, `score_gad7`, `Score`, `cssrs_level`)
is used by other tools and stays exactly as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crisis.levels import LEVELS

PHQ9_BANDS = (
    (0, 4, "minimal"),
    (5, 9, "mild"),
    (10, 14, "moderate"),
    (15, 19, "moderately severe"),
    (20, 27, "severe"),
)
GAD7_BANDS = ((0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 21, "severe"))
GAD7_FLAG = 10


@dataclass(frozen=True, slots=True)
class Score:
    """A questionnaire's total and its severity band."""

    total: int
    band: str


def _score(
    items: Sequence[int], count: int, name: str, bands: tuple[tuple[int, int, str], ...]
) -> Score:
    if len(items) != count:
        raise ValueError(f"{name} has {count} items, got {len(items)}")
    for number, item in enumerate(items, start=1):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 3:
            raise ValueError(f"{name} item {number} must be 0, 1, 2 or 3, got {item!r}")
    total = sum(items)
    band = next(label for low, high, label in bands if low <= total <= high)
    return Score(total, band)


def score_phq9(items: Sequence[int]) -> Score:
    """PHQ-9: nine items 0-3, total 0-27, bands minimal/mild/moderate/moderately severe/severe."""
    return _score(items, 9, "PHQ-9", PHQ9_BANDS)


def score_gad7(items: Sequence[int]) -> Score:
    """GAD-7: seven items 0-3, total 0-21, bands minimal/mild/moderate/severe (>= 10 flagged)."""
    return _score(items, 7, "GAD-7", GAD7_BANDS)


@dataclass(frozen=True, slots=True)
class CssrsResult:
    """The screener's level and the rule that produced it."""

    level: str
    rule: str


def cssrs_result(
    *,
    q1: bool,
    q2: bool,
    q3: bool | None = None,
    q4: bool | None = None,
    q5: bool | None = None,
    q6: bool,
    q6_past_3_months: bool | None = None,
) -> CssrsResult:
    """The C-SSRS screener's triage (CLINICAL.md 4), with the rule that decided it."""
    if q2:
        missing = [name for name, value in (("Q3", q3), ("Q4", q4), ("Q5", q5)) if value is None]
        if missing:
            raise ValueError(f"Q2 is yes, so {', '.join(missing)} must be answered")
    else:
        asked = [name for name, value in (("Q3", q3), ("Q4", q4), ("Q5", q5)) if value is not None]
        if asked:
            raise ValueError(f"Q2 is no, so {', '.join(asked)} must not be asked")
    if q6 and q6_past_3_months is None:
        raise ValueError("Q6 is yes, so whether it was within the past 3 months must be answered")
    if not q6 and q6_past_3_months is not None:
        raise ValueError("Q6 is no, so the 3-month question must not be asked")
    if q4:
        return CssrsResult("high", "Q4: intent without a specific plan")
    if q5:
        return CssrsResult("high", "Q5: intent with a plan")
    if q6 and q6_past_3_months:
        return CssrsResult("high", "Q6: preparatory behavior within the past 3 months")
    if q3:
        return CssrsResult("moderate", "Q3: thought about a method")
    if q6:
        return CssrsResult("moderate", "Q6: preparatory behavior more than 3 months ago")
    if q1 or q2:
        return CssrsResult("low", "Q1/Q2: wish to be dead or thoughts of suicide only")
    return CssrsResult("none", "no to every question")


def cssrs_level(
    *,
    q1: bool,
    q2: bool,
    q3: bool | None = None,
    q4: bool | None = None,
    q5: bool | None = None,
    q6: bool,
    q6_past_3_months: bool | None = None,
) -> str:
    """ "none", "low", "moderate" or "high" per the C-SSRS screener's triage."""
    return cssrs_result(
        q1=q1, q2=q2, q3=q3, q4=q4, q5=q5, q6=q6, q6_past_3_months=q6_past_3_months
    ).level


@dataclass(frozen=True, slots=True)
class SubstanceUse:
    """Optional substance-use items for SUD programs."""

    used_since_last_session: bool | None
    craving: int | None  # 0-10
    intoxicated_now: bool | None

    def __post_init__(self) -> None:
        if self.craving is not None and not 0 <= self.craving <= 10:
            raise ValueError("craving is rated 0-10")


def phq9_opens_cssrs(items: Sequence[int | None]) -> bool:
    """PHQ-9 item 9 above 0 opens the C-SSRS screener in the same check-in."""
    return len(items) == 9 and items[8] is not None and items[8] > 0


def higher(first: str, second: str) -> str:
    """The more serious of two levels."""
    return first if LEVELS.index(first) >= LEVELS.index(second) else second
