"""The API benchmark still runs end to end (its figures are read by people, not asserted)."""

import json
import subprocess
import sys

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
