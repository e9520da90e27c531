"""The scale-out benchmark still runs end to end: two nodes, one room, the holder killed."""

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, ROOT
from tests.integration.test_cluster import REDIS_URL, _redis_reason

KEYS = (
    "nodes",
    "rooms",
    "participants",
    "killed_node",
    "rooms_moved",
    "failover_s_p50",
    "failover_s_max",
    "crisis_p99_ms",
    "lost",
    "lost_events",
    "lost_acks",
    "node_cpu_cores_before_kill",
)


def test_scale_benchmark_moves_a_room_off_a_killed_node_and_reports_its_figures(
    postgres_unavailable: str | None,
) -> None:
    reason = postgres_unavailable or asyncio.run(_redis_reason())
    if reason:
        pytest.skip(reason)
    result = subprocess.run(
        [
            sys.executable,
            "bench/scale.py",
            *("--nodes", "2", "--rooms", "1", "--participants", "3", "--seconds", "3"),
            "--json",
        ],
        cwd=ROOT,
        env={**os.environ, "IOP_BENCH_POSTGRES": POSTGRES_ADMIN_URL, "IOP_BENCH_REDIS": REDIS_URL},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    progress = result.stderr[-3000:]
    assert set(KEYS) <= set(figures), progress
    assert (figures["nodes"], figures["rooms"]) == (2, 1)
    assert figures["rooms_moved"] == 1, (figures, progress)
    assert isinstance(figures["failover_s_max"], float), (figures, progress)
    assert figures["lost_acks"] == 0, (figures, progress)
