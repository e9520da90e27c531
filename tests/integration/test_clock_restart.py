"""A server restart in the middle of a phase and of a check-in turn loses no time."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

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


async def test_a_process_taking_a_room_over_brings_admitted_people_straight_back_muted_as_before(
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
    me = (await _until(pws, "snapshot"))["you"]["id"]
    await host.send_json({"type": "admit_all"})
    await host.send_json({"type": "mute", "member_id": me, "audio": True})
    while True:
        member = (await _until(pws, "member"))["member"]
        if member["id"] == me and member["audio_blocked"]:
            break
    cookies = phone.cookie_jar.filter_cookies(URL(first.base_url))
    for closing in (pws, host):
        await closing.close()
    await phone.close()
    await http.close()
    await first.runner.cleanup()

    second = await start_server(data, sqlite_url)
    try:
        async with second.client() as again:
            again.cookie_jar.update_cookies(cookies)
            ws = await again.ws_connect(f"/ws/rooms/{room_id}")
            await ws.send_json({"type": "hello", "protocol": 1})
            snapshot = await _until(ws, "snapshot")
            # Straight back in (no waiting room), still muted by the clinician.
            assert snapshot["you"]["presence"] == "admitted"
            assert snapshot["you"]["audio_blocked"] is True
            await ws.close()
    finally:
        await second.runner.cleanup()
