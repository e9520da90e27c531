"""Token buckets: how often one connection may send the messages everyone else receives.

A bucket holds up to `burst` tokens and refills at `per_minute`; each message takes one.
Time is whatever the caller's clock says (seconds), so tests move time instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Rate:
    """A burst, then a steady rate."""

    burst: int
    per_minute: float

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_minute <= 0:
            raise ValueError("a rate needs a burst of at least 1 and a positive refill")


@dataclass(frozen=True, slots=True)
class Limits:
    """The rates one connection is held to, by message kind."""

    help: Rate = Rate(3, 3.0)
    chat: Rate = Rate(10, 30.0)
    react: Rate = Rate(5, 20.0)


@dataclass(slots=True)
class TokenBucket:
    """One kind of message on one connection."""

    rate: Rate
    tokens: float
    at: float

    @classmethod
    def full(cls, rate: Rate, now: float) -> TokenBucket:
        """A bucket that allows a whole burst at once."""
        return cls(rate, float(rate.burst), now)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.at)
        self.tokens = min(float(self.rate.burst), self.tokens + elapsed * self.rate.per_minute / 60)
        self.at = max(self.at, now)

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until the next token."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) * 60 / self.rate.per_minute)


class Kind(StrEnum):
    """The message kinds a connection is rate-limited on."""

    HELP = "help"
    CHAT = "chat"
    REACT = "react"


class ConnectionLimits:
    """The buckets of every connected member, and which refusals they were told about."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._buckets: dict[str, dict[Kind, TokenBucket]] = {}
        self._told: set[tuple[str, Kind]] = set()

    def fresh(self, member_id: str, now: float) -> None:
        """A new connection starts with full buckets."""
        self._buckets[member_id] = {
            Kind.HELP: TokenBucket.full(self._limits.help, now),
            Kind.CHAT: TokenBucket.full(self._limits.chat, now),
            Kind.REACT: TokenBucket.full(self._limits.react, now),
        }
        self._told = {told for told in self._told if told[0] != member_id}

    def forget(self, member_id: str) -> None:
        """The connection ended."""
        self._buckets.pop(member_id, None)

    def take(self, member_id: str, kind: Kind, now: float) -> bool:
        """Spend one token of `kind` (a member without buckets is not limited)."""
        bucket = self._buckets.get(member_id, {}).get(kind)
        if bucket is None:
            return True
        if bucket.take(now):
            self._told.discard((member_id, kind))
            return True
        return False

    def notice(self, member_id: str, kind: Kind, now: float) -> float | None:
        """Seconds to wait, the first time a refusal of `kind` is to be told; else None.

        One notice per pause, not one per refused frame: a flooding client's own outbox
        must not fill with refusals either.
        """
        bucket = self._buckets.get(member_id, {}).get(kind)
        if bucket is None or (member_id, kind) in self._told:
            return None
        self._told.add((member_id, kind))
        return round(bucket.wait_s(now), 1)
