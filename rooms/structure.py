"""Session templates: ordered phases with planned minutes, and the ones the project ships."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PhaseKind(StrEnum):
    """What a phase is for; the room runs some of them (grounding, the check-in round)."""

    ARRIVAL = "arrival"
    GROUNDING = "grounding"
    CHECKIN_ROUND = "checkin_round"
    CORE = "core"
    BREAK = "break"
    PROCESS = "process"
    INTEGRATION = "integration"
    INDIVIDUAL = "individual"
    CLOSING = "closing"


PHASE_KINDS = tuple(kind.value for kind in PhaseKind)
GROUNDING_EXERCISES = ("box_breathing", "box_breathing_3", "five_senses")
DEFAULT_TURN_SECONDS = 150
MAX_PHASES = 20


class StructureError(ValueError):
    """A template or plan that cannot be used."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of a session: kind, title, planned minutes, kind-specific settings."""

    kind: str
    title: str
    minutes: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in PHASE_KINDS:
            raise StructureError(f"unknown phase kind {self.kind!r}")
        if not 1 <= self.minutes <= 240:
            raise StructureError("a phase lasts 1-240 minutes")
        if not self.title.strip() or len(self.title) > 80:
            raise StructureError("a phase needs a title of at most 80 characters")
        if self.kind == PhaseKind.GROUNDING:
            exercise = self.settings.get("exercise", "box_breathing")
            if exercise not in GROUNDING_EXERCISES:
                raise StructureError(f"grounding exercise must be one of {GROUNDING_EXERCISES}")
        if self.kind == PhaseKind.CHECKIN_ROUND:
            turn = self.settings.get("turn_seconds", DEFAULT_TURN_SECONDS)
            if not isinstance(turn, int) or not 30 <= turn <= 900:
                raise StructureError("a check-in turn lasts 30-900 seconds")

    @property
    def turn_seconds(self) -> int:
        """Per-person turn length in a check-in round."""
        return int(self.settings.get("turn_seconds", DEFAULT_TURN_SECONDS))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "title": self.title,
            "minutes": self.minutes,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Phase:
        try:
            return cls(
                str(data["kind"]),
                str(data["title"]),
                int(data["minutes"]),
                dict(data.get("settings") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, StructureError):
                raise
            raise StructureError("a phase needs kind, title and minutes") from None


@dataclass(frozen=True, slots=True)
class Template:
    """A named, ordered list of phases."""

    name: str
    title: str
    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        if not self.phases or len(self.phases) > MAX_PHASES:
            raise StructureError(f"a template has 1-{MAX_PHASES} phases")

    @property
    def minutes(self) -> int:
        return sum(phase.minutes for phase in self.phases)

    def summary(self) -> dict[str, Any]:
        """The public shape: {"name", "minutes", "phases": [{"kind", "title", "minutes"}]}."""
        return {
            "name": self.name,
            "minutes": self.minutes,
            "phases": [
                {"kind": p.kind, "title": p.title, "minutes": p.minutes} for p in self.phases
            ],
        }


def phases_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[Phase, ...]:
    """Parse a stored phase list."""
    return tuple(Phase.from_json(item) for item in items)


# CLINICAL.md 5: the 180-minute evening group, one-on-one templates, and a shorter group.
SHIPPED: tuple[Template, ...] = (
    Template(
        "evening-group-180",
        "Evening IOP group (180 minutes)",
        (
            Phase("arrival", "Arrival, tech and privacy check, location, screeners", 10),
            Phase("grounding", "Grounding", 5, {"exercise": "box_breathing"}),
            Phase("checkin_round", "Check-in round", 25, {"turn_seconds": 150}),
            Phase("core", "Skills (CBT/DBT)", 60),
            Phase("break", "Break", 10),
            Phase("process", "Group process", 55),
            Phase("integration", "Integration and closing safety check", 15),
        ),
    ),
    Template(
        "group-90",
        "Group (90 minutes)",
        (
            Phase("arrival", "Arrival and location check", 5),
            Phase("grounding", "Grounding", 5, {"exercise": "five_senses"}),
            Phase("checkin_round", "Check-in round", 15, {"turn_seconds": 120}),
            Phase("core", "Skills", 40),
            Phase("process", "Group process", 20),
            Phase("integration", "Closing safety check", 5),
        ),
    ),
    Template(
        "individual-50",
        "Individual therapy (50 minutes)",
        (
            Phase("arrival", "Arrival and location check", 5),
            Phase("individual", "Session", 40),
            Phase("closing", "Closing and safety check", 5),
        ),
    ),
    Template(
        "psychiatry-25",
        "Psychiatry visit (25 minutes)",
        (
            Phase("arrival", "Arrival and location check", 3),
            Phase("individual", "Visit", 19),
            Phase("closing", "Plan and safety check", 3),
        ),
    ),
    # A clinician walks a new patient through camera, sound and connection before a first
    # group (the patient's own guided check is /techcheck).
    Template(
        "tech-test-10",
        "Technology test (10 min)",
        (
            Phase("arrival", "Welcome and location check", 2),
            Phase("individual", "Camera, sound and connection check", 6),
            Phase("closing", "Tips and the first group", 2),
        ),
    ),
    Template(
        "family-50",
        "Family session (50 min)",
        (
            Phase("arrival", "Arrival and introductions", 5),
            Phase("individual", "Family session", 40),
            Phase("closing", "Closing and next steps", 5),
        ),
    ),
)
