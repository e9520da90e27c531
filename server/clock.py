"""The server's notion of now, in one place so tests and domain code agree."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class Clock:
    """Wall-clock time for the application; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self._offset = dt.timedelta()

    def now(self) -> dt.datetime:
        """The current time in UTC, plus any offset a test applied."""
        return utcnow() + self._offset

    def advance(self, **delta: float) -> None:
        """Move time forward (tests only): `clock.advance(minutes=16)`."""
        self._offset += dt.timedelta(**delta)
