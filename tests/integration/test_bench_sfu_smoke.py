"""The SFU benchmark still runs end to end (its figures are read by people, not asserted)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

KEYS = (
    "participants",
    "groups",
    "seconds",
    "peer",
    "server_cpu_cores",
    "forwarded_pps",
    "us_per_packet",
    "floor_us_per_packet",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_video_p50_ms",
    "latency_video_p99_ms",
    "latency_audio_p50_ms",
    "latency_audio_p99_ms",
    "subscriber_fps_min",
    "pairs_expected",
    "pairs_without_packets",
    "pairs_silent",
    "min_pair_pps",
    "min_stream_pps",
    "rtcp_sent",
    "rtcp_received",
    "mid_packets_sent",
    "baseline_ratio",
)


def _run(peer: str) -> dict[str, object]:
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
            "--peer",
            peer,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures: dict[str, object] = json.loads(result.stdout)
    assert set(KEYS) <= set(figures)
    assert figures["participants"] == 3
    assert figures["peer"] == peer
    assert figures["forwarded_pps"] > 0  # type: ignore[operator]
    assert figures["floor_us_per_packet"] > 0  # type: ignore[operator]
    assert figures["pairs_expected"] == 3 * 2 * 2  # everyone's audio and video to the others
    assert figures["pairs_without_packets"] == 0
    return figures


@pytest.mark.parametrize("peer", ["raw", "browser"])
def test_sfu_benchmark_forwards_between_three_real_peers_and_reports_its_figures(
    peer: str,
) -> None:
    figures = _run(peer)
    if peer == "raw":
        assert figures["rtcp_sent"] == {}
        assert figures["mid_packets_sent"] == 0
        return
    # Browser-like peers report on what they send and receive, and hear the server's reports.
    sent, received = figures["rtcp_sent"], figures["rtcp_received"]
    assert isinstance(sent, dict) and isinstance(received, dict)
    assert sent["sr"] > 0 and sent["rr"] > 0 and sent["remb"] > 0
    assert received["rr"] > 0 and received["sr"] > 0
    assert figures["mid_packets_sent"] > 0
    assert figures["mid_packets_measured"] == 0  # the server's first RR ended it
    assert figures["latency_audio_p50_ms"] is not None
