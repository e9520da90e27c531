"""The Stanley-Brown safety plan: six steps in a fixed order, versioned per patient.

CLINICAL.md section 2: warning signs, internal coping, people and places for distraction,
people to ask for help, professionals and agencies (988 and the local ED among them), and
making the environment safe. Storage seals each version; this module decides what a plan is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STEPS: tuple[tuple[str, str], ...] = (
    ("warning_signs", "1. Warning signs"),
    ("internal_coping", "2. Internal coping strategies"),
    ("distraction", "3. People and social settings that provide distraction"),
    ("ask_for_help", "4. People I can ask for help"),
    ("professionals", "5. Professionals or agencies to contact in a crisis (988, local ED)"),
    ("safe_environment", "6. Making the environment safe"),
)
STEP_NAMES = tuple(name for name, _ in STEPS)
MAX_STEP_CHARS = 2000


class PlanInvalid(ValueError):
    """A plan that cannot be saved, one reason per step at fault."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class SafetyPlan:
    """One version of a patient's plan: the text of each step, in order."""

    steps: tuple[tuple[str, str], ...]  # (step name, text)

    def labelled(self) -> list[tuple[str, str]]:
        """(label, text) pairs in the plan's order, for display."""
        labels = dict(STEPS)
        return [(labels[name], text) for name, text in self.steps]

    def to_json(self) -> dict[str, str]:
        """The plan as a JSON object keyed by step name."""
        return dict(self.steps)


def parse_plan(data: Mapping[str, Any]) -> SafetyPlan:
    """Validate six steps' text; a plan must say something in at least one of them."""
    errors: dict[str, str] = {}
    unknown = set(data) - set(STEP_NAMES)
    for name in sorted(unknown):
        errors[name] = "is not a step of the safety plan"
    steps = []
    for name in STEP_NAMES:
        raw = data.get(name, "")
        if not isinstance(raw, str):
            errors[name] = "must be text"
            continue
        text = raw.strip()
        if len(text) > MAX_STEP_CHARS:
            errors[name] = f"must be at most {MAX_STEP_CHARS} characters"
        elif any(ord(ch) < 32 and ch not in "\n\r\t" for ch in text):
            errors[name] = "must not contain control characters"
        steps.append((name, text))
    if not errors and not any(text for _, text in steps):
        errors[STEP_NAMES[0]] = "write at least one step of the plan"
    if errors:
        raise PlanInvalid(errors)
    return SafetyPlan(tuple(steps))
