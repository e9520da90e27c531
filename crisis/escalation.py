"""The one entry point through which every concern about a patient enters the crisis path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from crisis.levels import EVENT_LEVELS, LEVELS, Level

TRIGGERS = ("screening", "clinician_flag", "help_button", "silence", "dropped", "mood_check")


@dataclass(frozen=True, slots=True)
class Concern:
    """Something that may need a clinician now: who, in which session, why, how serious."""

    patient_id: str
    session_id: str
    trigger: str
    level: str  # none | low | moderate | high
    rule: str
    at: dt.datetime
    detail: Mapping[str, Any] = field(default_factory=dict)  # scores; stored sealed
    raised_by: str | None = None  # the staff member who flagged it (clinician_flag)

    def __post_init__(self) -> None:
        if self.trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {self.trigger!r}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown level {self.level!r}")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the concern became."""

    kind: str  # "event" | "review_task" | "none"
    id: str | None = None


class ConcernStore(Protocol):
    """Durable storage for what concerns become (the server implements it)."""

    async def open_event(self, concern: Concern) -> str:
        """Record an escalation that staff must act on now; return its id.

        A concern about a patient who already has an open event in the same session is
        added to that event, whose id is returned: one patient, one incident, one timeline.
        """

    async def add_review_task(self, concern: Concern) -> str:
        """Record a review the facilitator owes before the session ends; return its id."""


async def raise_concern(store: ConcernStore, concern: Concern) -> Outcome:
    """Moderate and high open an escalation now; low asks for a review before the end."""
    if concern.level in EVENT_LEVELS:
        return Outcome("event", await store.open_event(concern))
    if concern.level == Level.LOW:
        return Outcome("review_task", await store.add_review_task(concern))
    return Outcome("none")
