"""The technology check's result: validation, the connection verdict, the staff summary."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms.techcheck import (
    Measures,
    TechCheckError,
    Thresholds,
    connection_state,
    parse_result,
    staff_summary,
)

GOOD: dict[str, Any] = {
    "step_browser": "pass",
    "step_camera": "pass",
    "step_microphone": "pass",
    "step_speaker": "pass",
    "step_relay": "pass",
    "rtt_ms": "42",
    "loss_pct": "0.5",
    "kbps": "480",
    "browser": "chrome",
}
LIMITS = Thresholds()


def test_a_good_run_passes_with_its_numbers() -> None:
    result = parse_result(GOOD, LIMITS, relay_configured=True)
    assert result.passed and result.problems == ()
    assert result.state("connection") == "pass"
    assert result.measures == Measures(42, 0.5, 480)
    assert result.browser == "chrome"


@pytest.mark.parametrize(
    ("field", "value"),
    [("rtt_ms", "900"), ("loss_pct", "12.5"), ("kbps", "60"), ("kbps", "")],
)
def test_the_connection_verdict_is_the_servers_from_the_numbers(field: str, value: str) -> None:
    # Whatever the page thought: a slow, lossy, thin or unmeasured connection is a problem.
    result = parse_result(
        GOOD | {field: value, "step_connection": "pass"}, LIMITS, relay_configured=True
    )
    assert result.problems == ("connection",)
    assert staff_summary(result.passed, result.problems) == "Tech check: problems (connection)"


def test_problems_are_listed_in_the_order_the_check_runs() -> None:
    data = GOOD | {"step_speaker": "problem", "step_camera": "problem", "kbps": "10"}
    result = parse_result(data, LIMITS, relay_configured=True)
    assert result.problems == ("camera", "speaker", "connection")
    assert staff_summary(False, result.problems) == (
        "Tech check: problems (camera, speaker, connection)"
    )


def test_the_relay_is_skipped_without_a_turn_server_and_required_with_one() -> None:
    without = parse_result(GOOD | {"step_relay": "problem"}, LIMITS, relay_configured=False)
    assert without.state("relay") == "skipped" and without.passed
    missing = {k: v for k, v in GOOD.items() if k != "step_relay"}
    with pytest.raises(TechCheckError) as caught:
        parse_result(missing, LIMITS, relay_configured=True)
    assert caught.value.field == "step_relay"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (GOOD | {"step_camera": "maybe"}, "step_camera"),
        (GOOD | {"step_camera": "skipped"}, "step_camera"),
        (GOOD | {"rtt_ms": "fast"}, "rtt_ms"),
        (GOOD | {"rtt_ms": "-1"}, "rtt_ms"),
        (GOOD | {"loss_pct": "nan"}, "loss_pct"),
        (GOOD | {"loss_pct": "101"}, "loss_pct"),
        (GOOD | {"kbps": "1e9"}, "kbps"),
        (GOOD | {"browser": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"}, "browser"),
        (GOOD | {"device_label": "FaceTime HD Camera"}, "device_label"),
    ],
)
def test_bad_fields_are_refused_by_name_without_echoing_the_value(
    data: dict[str, Any], field: str
) -> None:
    with pytest.raises(TechCheckError) as caught:
        parse_result(data, LIMITS, relay_configured=True)
    assert caught.value.field == field
    assert str(data[field]) not in caught.value.reason


@given(
    rtt=st.one_of(st.none(), st.integers(0, 60_000)),
    loss=st.one_of(st.none(), st.floats(0, 100)),
    kbps=st.one_of(st.none(), st.integers(0, 100_000)),
)
def test_connection_passes_only_within_every_threshold(
    rtt: int | None, loss: float | None, kbps: int | None
) -> None:
    state = connection_state(Measures(rtt, loss, kbps), LIMITS)
    within = (
        rtt is not None
        and loss is not None
        and kbps is not None
        and rtt <= LIMITS.max_rtt_ms
        and loss <= LIMITS.max_loss_pct
        and kbps >= LIMITS.min_kbps
    )
    assert state == ("pass" if within else "problem")


def test_a_passed_check_says_so() -> None:
    assert staff_summary(True, ()) == "Tech check passed"
