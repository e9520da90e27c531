"""The SFU benchmark still runs end to end (its figures are read by people, not asserted)."""

import json
import subprocess
import sys

from tests.conftest import ROOT

KEYS = (
    "participants",
    "groups",
    "seconds",
    "server_cpu_cores",
    "forwarded_pps",
    "us_per_packet",
    "floor_us_per_packet",
    "latency_p50_ms",
    "latency_p99_ms",
    "subscriber_fps_min",
    "baseline_ratio",
)


def test_sfu_benchmark_forwards_between_three_real_peers_and_reports_its_figures() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "bench/sfu.py",
            "--participants",
            "3",
            "--seconds",
            "3",
            "--no-baseline",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(KEYS) <= set(figures)
    assert figures["participants"] == 3
    assert figures["forwarded_pps"] > 0
    assert figures["floor_us_per_packet"] > 0
