"""Who is paged about a crisis event, when, and what an acknowledgement stops.

Pure: a program's escalation policy turns a raised event into a list of deadlines with
absolute due times. The server stores those deadlines as durable timers and fires each
one once; this module only decides what they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crisis.levels import Level

# On-call roles a program's roster fills, per time window.
ONCALL_ROLES = ("primary", "backup", "medical_director")
# Everyone a notification can be addressed to: the session's own clinicians, then on-call.
NOTIFY_ROLES = ("facilitator", "cofacilitator", *ONCALL_ROLES)
MAX_AFTER = dt.timedelta(days=1)
# Every deadline this module plans waits for an acknowledgement, so an ack cancels them all.
ACK_PURPOSE_PREFIX = "ack"


class PolicyError(ValueError):
    """An escalation policy that cannot be used, with the field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Escalation:
    """If nobody has acknowledged `after` the raise, page `page` (and log the miss)."""

    after: dt.timedelta
    page: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LevelPolicy:
    """How one level is routed: who is paged at once, and the escalation ladder."""

    first: tuple[str, ...]
    escalations: tuple[Escalation, ...]
    # Low concerns wait for the session's end instead of a fixed interval.
    until_session_end: bool = False

    @property
    def ack_within(self) -> dt.timedelta | None:
        """The acknowledgement SLA: the first rung of the ladder."""
        return self.escalations[0].after if self.escalations else None


@dataclass(frozen=True, slots=True)
class Policy:
    """A program's escalation policy, per level."""

    high: LevelPolicy
    moderate: LevelPolicy
    low: LevelPolicy

    def for_level(self, level: str) -> LevelPolicy:
        """The routing for `level` (none is never routed)."""
        if level == Level.HIGH:
            return self.high
        if level == Level.MODERATE:
            return self.moderate
        if level == Level.LOW:
            return self.low
        raise PolicyError("level", f"no routing for level {level!r}")


def _s(seconds: int) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


# CLINICAL.md section 7, policy defaults: high 60 s (re-page, then the backup supervisor at
# 2 min, then the medical director at 5 min), moderate 5 min, low before the session ends.
DEFAULT_POLICY = Policy(
    high=LevelPolicy(
        first=("facilitator", "cofacilitator", "primary"),
        escalations=(
            Escalation(_s(60), ("primary",)),
            Escalation(_s(120), ("primary", "backup")),
            Escalation(_s(300), ("medical_director",)),
        ),
    ),
    moderate=LevelPolicy(
        first=("facilitator", "cofacilitator", "primary"),
        escalations=(Escalation(_s(300), ("primary", "backup")),),
    ),
    low=LevelPolicy(first=("facilitator",), escalations=(), until_session_end=True),
)


@dataclass(frozen=True, slots=True)
class Deadline:
    """One durable timer: at `due_at`, if still unacknowledged, `waiting_on` missed it."""

    purpose: str
    due_at: dt.datetime
    waiting_on: tuple[str, ...]
    page: tuple[str, ...]


def deadlines(
    policy: Policy, level: str, raised_at: dt.datetime, session_ends: dt.datetime | None = None
) -> list[Deadline]:
    """The acknowledgement deadlines of an event raised at `raised_at`, in due order."""
    routing = policy.for_level(level)
    if routing.until_session_end:
        if session_ends is None:
            return []
        return [Deadline(f"{ACK_PURPOSE_PREFIX}-{level}-end", session_ends, routing.first, ())]
    paged = list(routing.first)
    found = []
    for number, rung in enumerate(routing.escalations, start=1):
        found.append(
            Deadline(
                f"{ACK_PURPOSE_PREFIX}-{level}-{number}",
                raised_at + rung.after,
                tuple(paged),
                rung.page,
            )
        )
        paged.extend(role for role in rung.page if role not in paged)
    return found


def cancelled_by_ack(purpose: str) -> bool:
    """True for deadlines an acknowledgement makes moot (all of the ladder)."""
    return purpose.startswith(ACK_PURPOSE_PREFIX + "-")


LEVEL_RANK: dict[str, int] = {level.value: level.rank for level in Level}


def more_urgent(new: str, current: str) -> bool:
    """True when a new concern's level outranks the event's."""
    return LEVEL_RANK[new] > LEVEL_RANK[current]


# Storage form --------------------------------------------------------------------------


def _roles(raw: Any, field: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(role, str) for role in raw):
        raise PolicyError(field, "must be a list of roles")
    unknown = [role for role in raw if role not in NOTIFY_ROLES]
    if unknown:
        raise PolicyError(field, f"unknown role {unknown[0]!r}; use {', '.join(NOTIFY_ROLES)}")
    if len(set(raw)) != len(raw):
        raise PolicyError(field, "names a role twice")
    return tuple(raw)


def _level_from_json(raw: Any, name: str, default: LevelPolicy) -> LevelPolicy:
    if raw is None:
        return default
    if not isinstance(raw, Mapping):
        raise PolicyError(name, "must be an object")
    unknown = set(raw) - {"page_first", "escalations"}
    if unknown:
        raise PolicyError(f"{name}.{sorted(unknown)[0]}", "unknown field")
    first = _roles(raw.get("page_first", list(default.first)), f"{name}.page_first")
    if not first:
        raise PolicyError(f"{name}.page_first", "someone must be paged when an event is raised")
    ladder_raw = raw.get("escalations")
    if ladder_raw is None:
        return LevelPolicy(first, default.escalations, default.until_session_end)
    if default.until_session_end:
        raise PolicyError(f"{name}.escalations", "low concerns are due by the session's end")
    if not isinstance(ladder_raw, list) or not ladder_raw:
        raise PolicyError(f"{name}.escalations", "must be a non-empty list")
    ladder: list[Escalation] = []
    for index, rung in enumerate(ladder_raw):
        field = f"{name}.escalations.{index}"
        if not isinstance(rung, Mapping) or set(rung) != {"after_s", "page"}:
            raise PolicyError(field, "must be {after_s, page}")
        after_s = rung["after_s"]
        if isinstance(after_s, bool) or not isinstance(after_s, int | float):
            raise PolicyError(f"{field}.after_s", "must be a number of seconds")
        after = dt.timedelta(seconds=after_s)
        if not dt.timedelta(0) < after <= MAX_AFTER:
            raise PolicyError(f"{field}.after_s", "must be more than 0 and at most a day")
        if ladder and after <= ladder[-1].after:
            raise PolicyError(f"{field}.after_s", "each rung must come after the one before")
        page = _roles(rung["page"], f"{field}.page")
        if not page:
            raise PolicyError(f"{field}.page", "a rung must page someone")
        ladder.append(Escalation(after, page))
    return LevelPolicy(first, tuple(ladder))


def policy_from_json(raw: Any) -> Policy:
    """A policy from its stored JSON; levels left out keep the defaults."""
    if raw is None:
        return DEFAULT_POLICY
    if not isinstance(raw, Mapping):
        raise PolicyError("policy", "must be an object")
    unknown = set(raw) - {"high", "moderate", "low"}
    if unknown:
        raise PolicyError(sorted(unknown)[0], "unknown level")
    return Policy(
        high=_level_from_json(raw.get("high"), "high", DEFAULT_POLICY.high),
        moderate=_level_from_json(raw.get("moderate"), "moderate", DEFAULT_POLICY.moderate),
        low=_level_from_json(raw.get("low"), "low", DEFAULT_POLICY.low),
    )


def policy_to_json(policy: Policy) -> dict[str, Any]:
    """The policy as stored and shown to admins."""

    def level(routing: LevelPolicy) -> dict[str, Any]:
        out: dict[str, Any] = {"page_first": list(routing.first)}
        if not routing.until_session_end:
            out["escalations"] = [
                {"after_s": rung.after.total_seconds(), "page": list(rung.page)}
                for rung in routing.escalations
            ]
        return out

    return {
        "high": level(policy.high),
        "moderate": level(policy.moderate),
        "low": level(policy.low),
    }
