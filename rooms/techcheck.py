"""The technology check a patient runs before a first group: what a result holds, when it
passes, and what staff are told.

The browser runs the steps and takes the measurements; what is kept is pass, problem or
skipped per step, the connection's numbers and the browser's family. Nothing the patient
wrote or named (not even the device labels) is kept, so a result is not PHI. The
connection's verdict is taken here from the numbers, by the same thresholds the page
shows its advice by, so the page and the staff badge never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STEPS = ("browser", "camera", "microphone", "speaker", "connection", "relay")
STATES = ("pass", "problem", "skipped")
# The user agent is reduced to one of these in the browser; nothing finer is kept.
BROWSERS = ("chrome", "safari", "firefox", "edge", "samsung", "webview", "other")
STEP_TITLES = {
    "browser": "browser",
    "camera": "camera",
    "microphone": "microphone",
    "speaker": "speaker",
    "connection": "connection",
    "relay": "relay (TURN)",
}
MAX_RTT_MS = 60_000
MAX_KBPS = 100_000


class TechCheckError(ValueError):
    """A result that cannot be kept: which field, and why (never the value sent)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a connection is good enough for a group's video (policy defaults)."""

    max_rtt_ms: int = 400
    max_loss_pct: float = 5.0
    # Audio (~40 kbit/s) and the least video worth showing; the room caps video at 500.
    min_kbps: int = 100

    def to_json(self) -> dict[str, Any]:
        """What the page needs to give the same advice the server records."""
        return {
            "max_rtt_ms": self.max_rtt_ms,
            "max_loss_pct": self.max_loss_pct,
            "min_kbps": self.min_kbps,
        }


@dataclass(frozen=True, slots=True)
class Measures:
    """The echo test's numbers; None where the test could not measure."""

    rtt_ms: int | None = None
    loss_pct: float | None = None
    kbps: int | None = None


@dataclass(frozen=True, slots=True)
class TechCheckResult:
    """One run of the check: each step's state, the numbers, the browser family."""

    steps: tuple[tuple[str, str], ...]
    measures: Measures
    browser: str

    @property
    def problems(self) -> tuple[str, ...]:
        """The steps that need attention, in the order the check runs them."""
        return tuple(step for step, state in self.steps if state == "problem")

    @property
    def passed(self) -> bool:
        """True when nothing needs attention (a step skipped by design is not a problem)."""
        return not self.problems

    def state(self, step: str) -> str:
        """The state of one step."""
        return dict(self.steps)[step]


def connection_state(measures: Measures, thresholds: Thresholds) -> str:
    """`pass` when every number was measured and within the thresholds, else `problem`."""
    if measures.rtt_ms is None or measures.loss_pct is None or measures.kbps is None:
        return "problem"
    good = (
        measures.rtt_ms <= thresholds.max_rtt_ms
        and measures.loss_pct <= thresholds.max_loss_pct
        and measures.kbps >= thresholds.min_kbps
    )
    return "pass" if good else "problem"


def _number(data: Mapping[str, Any], field: str, top: float, *, whole: bool) -> float | None:
    raw = data.get(field)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw) if whole else float(raw)
    except (TypeError, ValueError):
        raise TechCheckError(field, "must be a number") from None
    if not math.isfinite(value) or not 0 <= value <= top:
        raise TechCheckError(field, f"must be between 0 and {top:g}")
    return value


def parse_result(
    data: Mapping[str, Any], thresholds: Thresholds, *, relay_configured: bool
) -> TechCheckResult:
    """A result from the page's fields (`step_<name>`, `rtt_ms`, `loss_pct`, `kbps`,
    `browser`), or a TechCheckError naming the first bad field.

    The connection's state is computed from the numbers; the relay step is `skipped` when
    the program runs no TURN server, and must have been run when it does.
    """
    allowed = {f"step_{step}" for step in STEPS} | {"rtt_ms", "loss_pct", "kbps", "browser"}
    unknown = sorted(key for key in data if key not in allowed and key != "csrf_token")
    if unknown:
        raise TechCheckError(unknown[0], "is not part of a technology check")
    rtt = _number(data, "rtt_ms", MAX_RTT_MS, whole=True)
    loss = _number(data, "loss_pct", 100, whole=False)
    kbps = _number(data, "kbps", MAX_KBPS, whole=True)
    measures = Measures(
        None if rtt is None else int(rtt),
        None if loss is None else round(loss, 2),
        None if kbps is None else int(kbps),
    )
    steps: list[tuple[str, str]] = []
    for step in STEPS:
        state = data.get(f"step_{step}")
        if step == "connection":
            state = connection_state(measures, thresholds)
        elif step == "relay" and not relay_configured:
            state = "skipped"
        elif state not in ("pass", "problem"):
            raise TechCheckError(f"step_{step}", "must be pass or problem")
        steps.append((step, str(state)))
    browser = data.get("browser", "other")
    if browser not in BROWSERS:
        raise TechCheckError("browser", f"must be one of {', '.join(BROWSERS)}")
    return TechCheckResult(tuple(steps), measures, str(browser))


def staff_summary(passed: bool, problems: tuple[str, ...] | list[str]) -> str:
    """The words beside a patient's name: "Tech check passed" or what needs attention."""
    if passed:
        return "Tech check passed"
    return "Tech check: problems (" + ", ".join(STEP_TITLES.get(p, p) for p in problems) + ")"
