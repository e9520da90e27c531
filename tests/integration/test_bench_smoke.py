"""The benchmarks still run end to end (their figures are read by people, not asserted)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_api_load_benchmark_runs_and_reports_every_route_without_errors() -> None:
    result = subprocess.run(
        [sys.executable, "bench/api_load.py", "--seconds", "0.5", "--concurrency", "2", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for route in ("readyz", "api_groups"):
        assert figures[route]["requests"] > 0
        assert figures[route]["errors"] == 0


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_crisis_benchmark_sees_every_help_press_on_the_dashboard(
    db: str, postgres_unavailable: str | None
) -> None:
    if db == "postgresql" and postgres_unavailable:
        pytest.skip(postgres_unavailable)
    result = subprocess.run(
        [
            sys.executable,
            "bench/crisis.py",
            "--db",
            db,
            "--rooms",
            "2",
            "--presses",
            "6",
            "--interval",
            "0.05",
            "--chatter",
            "5",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["db"] == db
    assert figures["rooms"] == 2 and figures["presses"] == 6
    assert figures["lost"] == 0
    assert figures["p50_ms"] > 0 and figures["p99_ms"] >= figures["p50_ms"]


def test_join_benchmark_measures_a_chromium_patient_from_admit_to_first_remote_frame(
    chromium_path: str,
) -> None:
    result = subprocess.run(
        [sys.executable, "bench/join.py", "--joins", "1", "--room-size", "3", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["joins"] == 1 and figures["room_size"] == 3
    assert figures["all_frames_incomplete"] == 0
    assert 0 < figures["first_frame_p50_ms"] <= figures["all_frames_p50_ms"]
