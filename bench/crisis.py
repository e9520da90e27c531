"""Crisis latency benchmark: a patient's help press -> the supervisor's dashboard.

Starts `python -m server` in its own process on a temporary SQLite database with the demo
program plus K groups of 12 patients (consented, checked in, each with a join link for
the group's next session), seeded beforehand through the server's own functions. From
this process it opens K live rooms over the room WebSocket (a clinician hosts every room
and admits everyone), connects the supervisor's dashboard socket, then has P different
patients press "I need help", spread across the rooms, and times each press (the help
message sent) until the dashboard shows the event. A background of chat keeps the rooms
busy while presses are measured.

    python bench/crisis.py [--rooms 20] [--presses 100] [--interval 0.1] [--db postgresql] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from processes import (  # noqa: E402  (bench/processes.py)
    GROUP_SIZE,
    Launched,
    Socket,
    database,
    free_port,
    make_demo,
    room_socket,
    seed_rooms,
    serve,
    sign_in,
    stop,
)

SEEN_TIMEOUT_S = 5.0


# Driving ------------------------------------------------------------------------------------


async def open_room(
    base: str, ssl_ctx: ssl.SSLContext, host_http: Any, room: dict[str, Any]
) -> tuple[Socket, list[Socket]]:
    """The clinician hosts; every patient opens their link, waits and is admitted."""
    host = await room_socket(host_http, room["session_id"])
    patients = []
    for link in room["links"]:
        http = aiohttp.ClientSession(
            base_url=base,
            connector=aiohttp.TCPConnector(ssl=ssl_ctx),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Origin": base},
        )
        async with http.get(link) as landing:
            if landing.status != 200:
                raise RuntimeError(f"join link refused: {landing.status}")
        patients.append(await room_socket(http, room["session_id"]))
    await host.ws.send_json({"type": "admit_all"})
    for patient in patients:
        await patient.until(
            lambda m: m["type"] == "snapshot" and m["you"]["presence"] == "admitted"
        )
    return host, patients


async def _heartbeat(sockets: list[Socket]) -> None:
    while True:
        await asyncio.sleep(10)
        for sock in list(sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.send_json({"type": "ping", "t": time.time()})


async def _chatter(rooms: list[tuple[Socket, list[Socket]]], per_second: float) -> None:
    if per_second <= 0:
        return
    rand = random.Random(7)
    while True:
        await asyncio.sleep(1 / per_second)
        _, patients = rand.choice(rooms)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await rand.choice(patients).ws.send_json(
                {"type": "chat", "to": "room", "text": "thank you for sharing"}
            )


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run(
    rooms: int, presses: int, interval: float, chatter: float, db: str = "sqlite"
) -> dict[str, Any]:
    """Start a server with K live rooms, press help P times, report latencies."""
    presses = min(presses, rooms * GROUP_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        async with database(db, data_dir) as database_url:
            launched = await make_demo(data_dir, free_port(), database_url)
            try:
                return await _measure(launched, data_dir, rooms, presses, interval, chatter, db)
            finally:
                await stop(launched)


async def _measure(
    launched: Launched,
    data_dir: Path,
    rooms: int,
    presses: int,
    interval: float,
    chatter: float,
    db: str,
) -> dict[str, Any]:
    began = time.perf_counter()
    seeded = await seed_rooms(launched.env, launched.demo, rooms)
    await serve(launched, data_dir)
    sockets: list[Socket] = []
    clients: list[Any] = []
    background: list[asyncio.Task[None]] = []
    try:
        base, ssl_ctx, demo = launched.base, launched.ssl, launched.demo
        by_role = {m["role"]: m for m in demo["staff"]}
        host_http = await sign_in(launched, by_role["clinician"])
        supervisor_http = await sign_in(launched, by_role["supervisor"])
        clients += [host_http, supervisor_http]
        # Rooms close a socket that says nothing for 35 s: ping from the first room on.
        background.append(asyncio.create_task(_heartbeat(sockets)))
        live = []
        for room in seeded:
            host, patients = await open_room(base, ssl_ctx, host_http, room)
            live.append((host, patients))
            sockets += [host, *patients]
            clients += [p.http for p in patients]
        setup_s = time.perf_counter() - began

        seen: dict[tuple[str, str], float] = {}
        arrived = asyncio.Event()

        def on_dashboard(message: dict[str, Any]) -> None:
            if message["type"] == "event" and message["kind"] == "raised":
                event = message["event"]
                key = (event["session_id"], event["patient_name"] or "")
                seen.setdefault(key, time.perf_counter())
                arrived.set()

        # The room's own alert to its clinician, for comparison: no storage on its path.
        in_room: dict[tuple[str, str], float] = {}

        def on_host(session_id: str) -> Any:
            def record(message: dict[str, Any]) -> None:
                if message["type"] == "help":
                    in_room.setdefault((session_id, message["name"]), time.perf_counter())

            return record

        for room, (host, _) in zip(seeded, live, strict=True):
            host.on_message = on_host(room["session_id"])

        ws = await supervisor_http.ws_connect("/ws/dashboard")
        board = Socket(supervisor_http, ws)
        await ws.send_json({"type": "hello", "protocol": 1})
        await board.until(lambda m: m["type"] == "snapshot")
        board.on_message = on_dashboard
        sockets.append(board)
        background.append(asyncio.create_task(_chatter(live, chatter)))

        # Every press is a different patient (a second press by the same patient while
        # the event is open is a step on that event, not a new one), round-robin over
        # the rooms so every room presses.
        order = [(room_no, seat) for seat in range(GROUP_SIZE) for room_no in range(rooms)][
            :presses
        ]
        pressed: dict[tuple[str, str], float] = {}
        rand = random.Random(11)
        for room_no, seat in order:
            room = seeded[room_no]
            patient = live[room_no][1][seat]
            key = (room["session_id"], f"R{room_no}P{seat}")
            pressed[key] = time.perf_counter()
            await patient.ws.send_json({"type": "help", "text": ""})
            await asyncio.sleep(interval * (0.5 + rand.random()))
        deadline = time.perf_counter() + SEEN_TIMEOUT_S
        while any(key not in seen for key in pressed) and time.perf_counter() < deadline:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), 0.2)
        latencies = [(seen[k] - t) * 1000 for k, t in pressed.items() if k in seen]
        room_latencies = [(in_room[k] - t) * 1000 for k, t in pressed.items() if k in in_room]
    finally:
        for task in background:
            task.cancel()
        for sock in sockets:
            with contextlib.suppress(Exception):
                await sock.close()
        for client in clients:
            await client.close()
    return {
        "machine": (
            f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "db": db,
        "rooms": rooms,
        "participants": rooms * GROUP_SIZE,
        "presses": len(pressed),
        "lost": len(pressed) - len(latencies),
        "p50_ms": round(_percentile(latencies, 50), 1) if latencies else None,
        "p90_ms": round(_percentile(latencies, 90), 1) if latencies else None,
        "p99_ms": round(_percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "room_alert_p50_ms": round(_percentile(room_latencies, 50), 1) if room_latencies else None,
        "room_alert_p99_ms": round(_percentile(room_latencies, 99), 1) if room_latencies else None,
        "interval_s": interval,
        "chatter_per_s": chatter,
        "setup_s": round(setup_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1, help="mean seconds between presses")
    parser.add_argument("--chatter", type=float, default=20.0, help="chat messages per second")
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: a fresh database on 127.0.0.1 (IOP_BENCH_POSTGRES names the server)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.rooms, args.presses, args.interval, args.chatter, args.db))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['machine']}; {result['db']}; {result['rooms']} rooms x {GROUP_SIZE} patients, "
        f"{result['presses']} presses, chatter {args.chatter:g}/s"
    )
    print(
        f"  press -> dashboard  p50 {result['p50_ms']} ms  p90 {result['p90_ms']} ms  "
        f"p99 {result['p99_ms']} ms  max {result['max_ms']} ms  lost {result['lost']}"
    )


if __name__ == "__main__":
    main()
