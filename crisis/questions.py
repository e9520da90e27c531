"""The check-in questions, one per screen, and the order they come in (skip logic included)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crisis.screening import (
    SubstanceUse,
    cssrs_result,
    phq9_opens_cssrs,
    score_gad7,
    score_phq9,
)

PREFER_NOT = "prefer_not"
# "I'd rather talk to my clinician": offered on the suicide items instead of an answer. It
# ends those items and the check-in; staff assess the patient before admission.
TALK = "talk_to_clinician"
DECLINED_RULE = "declined the suicide screen"
# Severe totals (CLINICAL.md 4): a program may lower these (stricter), never raise them.
SEVERE_DEFAULTS = {"phq9": 20, "gad7": 15}
FREQUENCY = (
    ("0", "Not at all"),
    ("1", "Several days"),
    ("2", "More than half the days"),
    ("3", "Nearly every day"),
)
YES_NO = (("yes", "Yes"), ("no", "No"))
PHQ9 = (
    "Little interest or pleasure in doing things",
    "Feeling down, depressed, or hopeless",
    "Trouble falling or staying asleep, or sleeping too much",
    "Feeling tired or having little energy",
    "Poor appetite or overeating",
    "Feeling bad about yourself, or that you are a failure or have let yourself or your "
    "family down",
    "Trouble concentrating on things, such as reading or watching television",
    "Moving or speaking so slowly that other people could have noticed, or being so "
    "fidgety or restless that you have been moving around a lot more than usual",
    "Thoughts that you would be better off dead, or of hurting yourself in some way",
)
GAD7 = (
    "Feeling nervous, anxious, or on edge",
    "Not being able to stop or control worrying",
    "Worrying too much about different things",
    "Trouble relaxing",
    "Being so restless that it is hard to sit still",
    "Becoming easily annoyed or irritable",
    "Feeling afraid, as if something awful might happen",
)
# The C-SSRS Screen Version (Recent), one question per screen. On paper the questions lean
# on each other ("how you might do this", "these thoughts"); alone on a screen that
# referent is lost, so each question spells it out, and every screen says what the
# questions are about and over what time.
CSSRS = {
    "cssrs_q1": "In the past month, have you wished you were dead or wished you could go to "
    "sleep and not wake up?",
    "cssrs_q2": "In the past month, have you had any actual thoughts of killing yourself?",
    "cssrs_q3": "In the past month, have you been thinking about how you might kill yourself?",
    "cssrs_q4": "In the past month, have you had thoughts of killing yourself and had some "
    "intention of acting on them (as opposed to having the thoughts but knowing you "
    "definitely would not act on them)?",
    "cssrs_q5": "In the past month, have you started to work out or worked out the details of "
    "how to kill yourself? Do you intend to carry out this plan?",
    "cssrs_q6": "Have you ever done anything, started to do anything, or prepared to do "
    "anything to end your life?",
    "cssrs_q6b": "Was any of this (doing, starting to do, or preparing to do anything to end "
    "your life) within the past 3 months?",
}
CSSRS_CONTEXT = "Questions about thoughts of suicide"
# The screener's own examples of suicidal behaviour, preparatory acts included.
CSSRS_Q6_EXAMPLES = (
    "collected pills",
    "obtained a gun",
    "gave away valuables",
    "wrote a will or suicide note",
    "took out pills but didn't swallow any",
    "held a gun but changed your mind or it was grabbed from your hand",
    "went to the roof but didn't jump",
    "or actually took pills, tried to shoot yourself, cut yourself, tried to hang yourself",
)
# Said once, on its own screen, before the first suicide question.
CSSRS_INTRODUCTION = (
    "The next questions are about thoughts of suicide. We ask them at every check-in, "
    "because they help your care team keep you safe.",
    "Some may not apply to you. Answer as best you can: there are no wrong answers.",
    "If you would rather talk about this with your clinician, you can: call your program, "
    "or use \u201cI need help\u201d on any page to reach them privately.",
)
PHQ_STEM = "Over the last 2 weeks, how often have you been bothered by this?"
CRAVING = tuple((str(n), str(n)) for n in range(11))


@dataclass(frozen=True, slots=True)
class Question:
    """One screen: the question, its answers, and whether "prefer not to answer" is offered."""

    id: str
    text: str
    options: tuple[tuple[str, str], ...]
    stem: str = ""
    skippable: bool = False
    can_decline: bool = False  # "I'd rather talk to my clinician" (the suicide items)
    context: str = ""  # what the question is about, shown on its screen
    examples: tuple[str, ...] = ()


def question(qid: str) -> Question:
    """The question with this id."""
    if qid.startswith("phq9_"):
        n = int(qid[5:])
        # Item 9 asks about self-harm: it is never skipped, because it opens the C-SSRS.
        return Question(qid, PHQ9[n - 1], FREQUENCY, PHQ_STEM, skippable=n != 9, can_decline=n == 9)
    if qid.startswith("gad7_"):
        return Question(qid, GAD7[int(qid[5:]) - 1], FREQUENCY, PHQ_STEM, skippable=True)
    if qid in CSSRS:
        examples = CSSRS_Q6_EXAMPLES if qid == "cssrs_q6" else ()
        return Question(
            qid, CSSRS[qid], YES_NO, context=CSSRS_CONTEXT, examples=examples, can_decline=True
        )
    if qid == "sud_used":
        return Question(
            qid, "Have you used alcohol or drugs since your last session?", YES_NO, skippable=True
        )
    if qid == "sud_craving":
        return Question(
            qid,
            "Right now, how strong is your craving, from 0 (none) to 10 (the strongest)?",
            CRAVING,
            skippable=True,
        )
    if qid == "sud_intoxicated":
        return Question(qid, "Are you under the influence of alcohol or drugs right now?", YES_NO)
    raise KeyError(qid)


@dataclass(frozen=True, slots=True)
class Plan:
    """Which instruments this check-in asks."""

    phq9: bool
    gad7: bool
    cssrs: bool
    sud: bool

    def to_json(self) -> dict[str, bool]:
        return {"phq9": self.phq9, "gad7": self.gad7, "cssrs": self.cssrs, "sud": self.sud}


def _cssrs_order(answers: Mapping[str, str]) -> list[str]:
    order = ["cssrs_q1", "cssrs_q2"]
    if answers.get("cssrs_q2") == "yes":
        order += ["cssrs_q3", "cssrs_q4", "cssrs_q5"]
    order.append("cssrs_q6")
    if answers.get("cssrs_q6") == "yes":
        order.append("cssrs_q6b")
    return order


def sequence(plan: Plan, answers: Mapping[str, str]) -> list[str]:
    """Every question this check-in asks, given what has been answered so far."""
    order: list[str] = []
    if plan.phq9:
        order += [f"phq9_{n}" for n in range(1, 10)]
    if plan.gad7:
        order += [f"gad7_{n}" for n in range(1, 8)]
    item9 = answers.get("phq9_9")
    if plan.cssrs or (item9 is not None and item9 != "0"):
        order += _cssrs_order(answers)
    if plan.sud:
        order += ["sud_used", "sud_craving", "sud_intoxicated"]
    declined = next((qid for qid in order if answers.get(qid) == TALK), None)
    if declined is not None:
        # The patient asked to talk instead: nothing after this screen is asked.
        return order[: order.index(declined) + 1]
    return order


def declined(answers: Mapping[str, str]) -> bool:
    """Whether the patient chose to talk to their clinician instead of the suicide items."""
    return TALK in answers.values()


def floor(answers: Mapping[str, str]) -> tuple[str, str]:
    """The least serious level the answers so far can still end at, and why.

    A yes on the suicide items only ever raises the C-SSRS level, so a partial check-in
    is already committed to this level: it is acted on as each answer is stored. On a
    finished screener it is the C-SSRS triage itself (`crisis.screening.cssrs_result`).
    """
    yes = {qid for qid in CSSRS if answers.get(qid) == "yes"}
    if "cssrs_q4" in yes:
        return "high", "Q4: intent without a specific plan"
    if "cssrs_q5" in yes:
        return "high", "Q5: intent with a plan"
    if {"cssrs_q6", "cssrs_q6b"} <= yes:
        return "high", "Q6: preparatory behavior within the past 3 months"
    if "cssrs_q3" in yes:
        return "moderate", "Q3: thought about a method"
    if "cssrs_q6" in yes:
        if answers.get("cssrs_q6b") == "no":
            return "moderate", "Q6: preparatory behavior more than 3 months ago"
        return "moderate", "Q6: preparatory behavior, when not answered"
    if declined(answers):
        return "moderate", DECLINED_RULE
    if yes & {"cssrs_q1", "cssrs_q2"}:
        return "low", "Q1/Q2: wish to be dead or thoughts of suicide only"
    if answers.get("phq9_9") not in (None, "0", PREFER_NOT, TALK):
        return "low", "PHQ-9 item 9 above 0"
    return "none", "no screener answered yes"


def next_question(plan: Plan, answers: Mapping[str, str]) -> str | None:
    """The first question not yet answered, or None when the check-in is complete."""
    return next((qid for qid in sequence(plan, answers) if qid not in answers), None)


def _items(answers: Mapping[str, str], prefix: str, count: int) -> list[int | None]:
    values: list[int | None] = []
    for n in range(1, count + 1):
        raw = answers.get(f"{prefix}_{n}")
        values.append(None if raw in (None, PREFER_NOT, TALK) else int(raw))
    return values


def results(plan: Plan, answers: Mapping[str, str]) -> dict[str, Any]:
    """Scores and the level, with the rule that produced it."""
    out: dict[str, Any] = {"answers": dict(answers), "plan": plan.to_json()}
    level, rule = "none", "no screener answered yes"
    for name, prefix, count, scorer in (
        ("phq9", "phq9", 9, score_phq9),
        ("gad7", "gad7", 7, score_gad7),
    ):
        if not getattr(plan, name):
            continue
        items = _items(answers, prefix, count)
        skipped = sum(1 for item in items if item is None)
        if not any(f"{prefix}_{n}" in answers for n in range(1, count + 1)):
            out[name] = {"total": None, "band": "not asked", "prefer_not": 0}
        elif skipped:
            out[name] = {"total": None, "band": "incomplete", "prefer_not": skipped}
        else:
            score = scorer([int(item) for item in items if item is not None])
            out[name] = {"total": score.total, "band": score.band, "prefer_not": 0}
    if declined(answers):
        # The suicide items ended early, so the screener cannot be scored: what was
        # answered still counts, and the refusal itself is at least moderate.
        level, rule = floor(answers)
        out["cssrs"] = {"level": level, "rule": rule, "declined": True}
        out["declined"] = True
    elif "cssrs_q1" in answers:
        yes = {qid: answers.get(qid) == "yes" for qid in CSSRS}

        def maybe(qid: str) -> bool | None:
            return yes[qid] if qid in answers else None

        result = cssrs_result(
            q1=yes["cssrs_q1"],
            q2=yes["cssrs_q2"],
            q3=maybe("cssrs_q3"),
            q4=maybe("cssrs_q4"),
            q5=maybe("cssrs_q5"),
            q6=yes["cssrs_q6"],
            q6_past_3_months=maybe("cssrs_q6b"),
        )
        out["cssrs"] = {"level": result.level, "rule": result.rule}
        level, rule = result.level, result.rule
    if plan.phq9 and phq9_opens_cssrs(_items(answers, "phq9", 9)) and level == "none":
        level, rule = "low", "PHQ-9 item 9 above 0"
    if plan.sud:
        craving, used = answers.get("sud_craving"), answers.get("sud_used")
        sud = SubstanceUse(
            None if used in (None, PREFER_NOT) else used == "yes",
            None if craving in (None, PREFER_NOT) else int(craving),
            None if "sud_intoxicated" not in answers else answers["sud_intoxicated"] == "yes",
        )
        out["sud"] = {
            "used_since_last_session": sud.used_since_last_session,
            "craving": sud.craving,
            "intoxicated_now": sud.intoxicated_now,
        }
    out["level"], out["rule"] = level, rule
    return out


def severe(scored: Mapping[str, Any], thresholds: Mapping[str, int]) -> list[dict[str, str]]:
    """Severe totals and substance use right now, each a review for the facilitator.

    These never change the C-SSRS level (a severe PHQ-9 with item 9 at 0 is not suicide
    risk), but they are not "nothing" either. A threshold above the default is ignored:
    a program may only make them stricter.
    """
    found: list[dict[str, str]] = []
    for name, label in (("phq9", "PHQ-9"), ("gad7", "GAD-7")):
        at = min(int(thresholds.get(name, SEVERE_DEFAULTS[name])), SEVERE_DEFAULTS[name])
        total = (scored.get(name) or {}).get("total")
        if total is not None and total >= at:
            found.append(
                {"code": f"{name}_severe", "rule": f"{label} total {total} (at or above {at})"}
            )
    if (scored.get("sud") or {}).get("intoxicated_now"):
        found.append({"code": "using_now", "rule": "under the influence right now"})
    return found


def introduction(qid: str) -> tuple[str, ...]:
    """The paragraphs of the screen shown once before this question, if it has one."""
    return CSSRS_INTRODUCTION if qid == "cssrs_q1" else ()


def valid_answer(qid: str, value: str) -> bool:
    """Whether `value` is one of the question's answers (or an allowed "prefer not"/"talk")."""
    q = question(qid)
    return (
        value in {v for v, _ in q.options}
        or (q.skippable and value == PREFER_NOT)
        or (q.can_decline and value == TALK)
    )


def progress(plan: Plan, answers: Mapping[str, str]) -> tuple[int, int]:
    """(this question's number, how many there are now) for the progress indicator."""
    order: Sequence[str] = sequence(plan, answers)
    done = sum(1 for qid in order if qid in answers)
    return min(done + 1, len(order)), len(order)
