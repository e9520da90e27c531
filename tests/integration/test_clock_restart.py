"""A server restart in the middle of a phase and of a check-in turn loses no time."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import RunningServer, consent_group, signed_in, staff_login, start_server


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            message = json.loads((await ws.receive()).data)
            if message["type"] == kind:
                return message


async def _host(server: RunningServer, demo: dict[str, Any], room_id: str) -> Any:
    http = await signed_in(server, *staff_login(demo, "clinician"))
    ws = await http.ws_connect(f"/ws/rooms/{room_id}")
    await ws.send_json({"type": "hello", "protocol": 1})
    snapshot = await _until(ws, "snapshot")
    return http, ws, snapshot


async def test_restart_mid_phase_and_mid_turn_resumes_with_the_same_time(
    tmp_path: Path, sqlite_url: str
) -> None:
    data = tmp_path / "data"
    first = await start_server(data, sqlite_url)
    demo = await first.seed_demo()
    await consent_group(first, demo)
    patient = demo["groups"][0]["patients"][0]
    room_id = patient["join_session_id"]
    http, host, _ = await _host(first, demo, room_id)
    phone = first.client()
    await phone.get(patient["join_url"])
    pws = await phone.ws_connect(f"/ws/rooms/{room_id}")
    await pws.send_json({"type": "hello", "protocol": 1})
    await _until(pws, "snapshot")
    await host.send_json({"type": "admit_all"})
    await host.send_json({"type": "clock", "op": "start"})
    await host.send_json({"type": "clock", "op": "jump", "index": 2})
    while True:
        clock = (await _until(host, "clock"))["clock"]
        if clock["checkin"] and clock["checkin"]["current"]:
            break
    await asyncio.sleep(1.0)
    for closing in (pws, host):
        await closing.close()
    await phone.close()
    await http.close()
    await first.runner.cleanup()

    second = await start_server(data, sqlite_url)
    try:
        http, host, snapshot = await _host(second, demo, room_id)
        after = snapshot["clock"]
        now = snapshot["server_time"]
        restored_left = after["remaining_s"]
        restored_turn = after["turn_remaining_s"]
        assert after["index"] == 2 and after["status"] == "running"
        assert after["checkin"]["current"] == f"patient:{patient['id']}"
        # What the clock said before the restart, evaluated now: time kept running while
        # the server was down, and nothing else changed.
        started = _ts(clock["phase_started_at"])
        planned = clock["phases"][2]["minutes"] * 60 + clock["extension_s"]
        expected_left = planned - (now - started - clock["paused_s"])
        turn = clock["checkin"]
        expected_turn = turn["turn_seconds"] - (
            now - _ts(turn["turn_started_at"]) - turn["turn_paused_s"]
        )
        assert abs(restored_left - expected_left) < 1.0
        assert abs(restored_turn - expected_turn) < 1.0
        assert now - started > 1.0  # the restart really happened mid-phase
        await host.close()
        await http.close()
    finally:
        await second.runner.cleanup()


def _ts(value: str) -> float:
    return dt.datetime.fromisoformat(value).timestamp()
