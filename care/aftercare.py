"""The discharge and aftercare plan: step-down level, follow-up appointments, a relapse
prevention plan, crisis resources and a copy of the patient's current safety plan.

CLINICAL.md 1 and the issue: a virtual IOP "uses outcome tracking to guide discharge
planning" with an aftercare plan that includes relapse prevention. Each saved plan is a new
version (storage seals it); this module decides what a valid plan is and how the patient's
copy reads as text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crisis.directory import format_phone, normalize_phone
from crisis.safety_plan import STEPS as SAFETY_STEPS

STEP_DOWN_LEVELS: tuple[tuple[str, str], ...] = (
    ("standard_outpatient", "Standard outpatient care"),
    ("php", "Partial hospitalization program (PHP)"),
    ("residential", "Residential treatment"),
    ("none_other", "None or other"),
)
RELAPSE_FIELDS: tuple[tuple[str, str], ...] = (
    ("triggers", "My triggers"),
    ("warning_signs", "My warning signs"),
    ("coping", "What I do to cope"),
    ("people", "People I can turn to"),
)
# Always on the plan, whatever else it lists (CLINICAL.md 2: national numbers always shown).
NATIONAL_LINES: tuple[tuple[str, str], ...] = (
    ("988", "988 Suicide & Crisis Lifeline: call or text 988, any time"),
    ("911", "911 in an emergency"),
)
MAX_FOLLOW_UPS = 5
MAX_TEXT_CHARS = 2000
MAX_SHORT_CHARS = 120
# A follow-up may be recorded a little after it happened; more than this looks like a typo.
PAST_DAYS_ALLOWED = 30
FUTURE_DAYS_ALLOWED = 2 * 366


class AftercareInvalid(ValueError):
    """A plan that cannot be saved, one reason per form field at fault."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class FollowUp:
    """One follow-up appointment after discharge."""

    on: dt.date
    provider: str
    phone: str  # formatted (555) 555-0100


@dataclass(frozen=True, slots=True)
class CrisisResources:
    """Numbers beside 988 and 911: the program's phone and the local crisis line."""

    program_phone: str  # as the program's record has it
    local_crisis_line: str  # formatted, or "" when the directory has none
    other: str


@dataclass(frozen=True, slots=True)
class AftercarePlan:
    """One version of a patient's aftercare plan."""

    step_down: str
    step_down_note: str
    follow_ups: tuple[FollowUp, ...]
    relapse: tuple[tuple[str, str], ...]  # (field name, text) in RELAPSE_FIELDS order
    crisis: CrisisResources
    safety_plan: tuple[tuple[str, str], ...]  # copied Stanley-Brown steps, may be empty
    safety_plan_version: int | None

    @property
    def step_down_label(self) -> str:
        """The step-down level as people read it."""
        return dict(STEP_DOWN_LEVELS)[self.step_down]

    def relapse_labelled(self) -> list[tuple[str, str]]:
        """(label, text) of the relapse-prevention plan."""
        labels = dict(RELAPSE_FIELDS)
        return [(labels[name], text) for name, text in self.relapse]

    def safety_labelled(self) -> list[tuple[str, str]]:
        """(label, text) of the copied safety plan."""
        labels = dict(SAFETY_STEPS)
        return [(labels[name], text) for name, text in self.safety_plan]

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON object (what storage seals)."""
        return {
            "step_down": self.step_down,
            "step_down_note": self.step_down_note,
            "follow_ups": [
                {"on": f.on.isoformat(), "provider": f.provider, "phone": f.phone}
                for f in self.follow_ups
            ],
            "relapse": dict(self.relapse),
            "crisis": {
                "program_phone": self.crisis.program_phone,
                "local_crisis_line": self.crisis.local_crisis_line,
                "other": self.crisis.other,
            },
            "safety_plan": dict(self.safety_plan),
            "safety_plan_version": self.safety_plan_version,
        }


def from_json(data: Mapping[str, Any]) -> AftercarePlan:
    """A stored plan, read back (it was validated when it was saved)."""
    crisis = data["crisis"]
    relapse = data.get("relapse", {})
    safety = data.get("safety_plan", {})
    return AftercarePlan(
        step_down=data["step_down"],
        step_down_note=data.get("step_down_note", ""),
        follow_ups=tuple(
            FollowUp(dt.date.fromisoformat(f["on"]), f["provider"], f["phone"])
            for f in data.get("follow_ups", [])
        ),
        relapse=tuple((name, relapse.get(name, "")) for name, _ in RELAPSE_FIELDS),
        crisis=CrisisResources(
            crisis["program_phone"], crisis.get("local_crisis_line", ""), crisis.get("other", "")
        ),
        safety_plan=tuple((name, safety[name]) for name, _ in SAFETY_STEPS if name in safety),
        safety_plan_version=data.get("safety_plan_version"),
    )


def _text(
    form: Mapping[str, Any], name: str, limit: int, errors: dict[str, str], *, multiline: bool
) -> str:
    raw = form.get(name, "")
    if not isinstance(raw, str):
        errors[name] = "must be text"
        return ""
    text = raw.strip()
    allowed = "\n\r\t" if multiline else ""
    if len(text) > limit:
        errors[name] = f"must be at most {limit} characters"
    elif any(ord(ch) < 32 and ch not in allowed for ch in text):
        errors[name] = "must not contain control characters"
    return text


def _phone(raw: str, name: str, errors: dict[str, str], *, required: bool) -> str:
    if not raw:
        if required:
            errors[name] = "enter a phone number"
        return ""
    try:
        return format_phone(normalize_phone(raw))
    except ValueError:
        errors[name] = "must be a US phone number with its area code, like (916) 555-0100"
        return ""


def _follow_ups(form: Mapping[str, Any], today: dt.date, errors: dict[str, str]) -> list[FollowUp]:
    found = []
    for n in range(1, MAX_FOLLOW_UPS + 1):
        names = (f"fu{n}_date", f"fu{n}_provider", f"fu{n}_phone")
        raw_date = _text(form, names[0], 10, errors, multiline=False)
        provider = _text(form, names[1], MAX_SHORT_CHARS, errors, multiline=False)
        raw_phone = _text(form, names[2], 32, errors, multiline=False)
        if not (raw_date or provider or raw_phone):
            continue
        on = None
        try:
            on = dt.date.fromisoformat(raw_date)
        except ValueError:
            errors[names[0]] = "enter the date as YYYY-MM-DD"
        if on is not None and on < today - dt.timedelta(days=PAST_DAYS_ALLOWED):
            errors[names[0]] = f"must be at most {PAST_DAYS_ALLOWED} days ago"
        elif on is not None and on > today + dt.timedelta(days=FUTURE_DAYS_ALLOWED):
            errors[names[0]] = "must be within the next two years"
        if not provider and names[1] not in errors:
            errors[names[1]] = "name the provider or service"
        phone = _phone(raw_phone, names[2], errors, required=True)
        if on is not None and provider and phone and not any(n in errors for n in names):
            found.append(FollowUp(on, provider, phone))
    return sorted(found, key=lambda f: f.on)


def parse_plan(
    form: Mapping[str, Any],
    today: dt.date,
    *,
    program_phone: str,
    safety_plan: Sequence[tuple[str, str]] = (),
    safety_plan_version: int | None = None,
) -> AftercarePlan:
    """Validate a submitted plan. The program's phone and the safety plan are copied as
    they are now, never typed in."""
    errors: dict[str, str] = {}
    step_down = form.get("step_down", "")
    if step_down not in dict(STEP_DOWN_LEVELS):
        errors["step_down"] = "choose a step-down level from the list"
    note = _text(form, "step_down_note", 300, errors, multiline=False)
    if step_down == "none_other" and not note and "step_down" not in errors:
        errors["step_down_note"] = "say what the patient steps down to, or why none"
    follow_ups = _follow_ups(form, today, errors)
    relapse = tuple(
        (name, _text(form, name, MAX_TEXT_CHARS, errors, multiline=True))
        for name, _ in RELAPSE_FIELDS
    )
    local_line = _phone(
        _text(form, "local_crisis_line", 32, errors, multiline=False),
        "local_crisis_line",
        errors,
        required=False,
    )
    other = _text(form, "other_resources", 500, errors, multiline=True)
    if errors:
        raise AftercareInvalid(errors)
    return AftercarePlan(
        step_down=str(step_down),
        step_down_note=note,
        follow_ups=tuple(follow_ups),
        relapse=relapse,
        crisis=CrisisResources(program_phone, local_line, other),
        safety_plan=tuple((name, text) for name, text in safety_plan if text),
        safety_plan_version=safety_plan_version,
    )


def as_text(plan: AftercarePlan, *, program_name: str, version: int, recorded_on: dt.date) -> str:
    """The patient's copy as a plain text file: readable on any phone, no script, no links."""
    lines = [
        f"My aftercare plan - {program_name}",
        f"Version {version}, written {recorded_on.isoformat()}",
        "",
        "IF YOU ARE IN CRISIS",
        *(f"  {text}" for _, text in NATIONAL_LINES),
        f"  {program_name}: {plan.crisis.program_phone}",
    ]
    if plan.crisis.local_crisis_line:
        lines.append(f"  Local crisis line: {plan.crisis.local_crisis_line}")
    if plan.crisis.other:
        lines.append(f"  Also: {plan.crisis.other}")
    lines += ["", "NEXT LEVEL OF CARE", f"  {plan.step_down_label}"]
    if plan.step_down_note:
        lines.append(f"  {plan.step_down_note}")
    lines += ["", "FOLLOW-UP APPOINTMENTS"]
    if plan.follow_ups:
        lines += [
            f"  {f.on.strftime('%a %b %d, %Y')}: {f.provider}, {f.phone}" for f in plan.follow_ups
        ]
    else:
        lines.append("  None booked yet: ask your program.")
    lines += ["", "STAYING WELL (relapse prevention)"]
    for label, text in plan.relapse_labelled():
        lines.append(f"  {label}:")
        lines += [f"    {line}" for line in (text or "-").splitlines()]
    lines += ["", "MY SAFETY PLAN"]
    if plan.safety_plan:
        for label, text in plan.safety_labelled():
            lines.append(f"  {label}:")
            lines += [f"    {line}" for line in text.splitlines()]
    else:
        lines.append("  No safety plan was on file when this plan was written.")
    lines += ["", "Call or text 988 at any time. In an emergency call 911.", ""]
    return "\n".join(lines)
