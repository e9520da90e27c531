"""How serious a concern is: none < low < moderate < high (CLINICAL.md 4 and 7)."""

from __future__ import annotations

from enum import StrEnum


class Level(StrEnum):
    """A concern's or an event's level; the values are what is stored and sent."""

    NONE = "none"
    LOW = "low"  # a review before the session ends
    MODERATE = "moderate"  # an escalation now
    HIGH = "high"  # an escalation now, paged at once

    @property
    def rank(self) -> int:
        """Its place in the order, for comparing two levels."""
        return LEVELS.index(self)


LEVELS = tuple(Level)
# The levels that open a crisis event (low asks for a review; none does nothing).
EVENT_LEVELS = (Level.MODERATE, Level.HIGH)
