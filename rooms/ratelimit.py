"""Token buckets: how often one connection may send the messages everyone else receives.

A bucket holds up to `burst` tokens and refills at `per_minute`; each message takes one.
Time is whatever the caller's clock says (seconds), so tests move time instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass


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
