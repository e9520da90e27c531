"""Crisis latency benchmark: a patient's help press -> the supervisor's dashboard.

Starts `python -m server` in its own process on a temporary SQLite database with the demo
program plus K groups of 12 patients (consented, checked in, each with a join link for
the group's next session), seeded beforehand through the server's own functions. From
this process it opens K live rooms over the room WebSocket (a clinician hosts every room
and admits everyone), connects the supervisor's dashboard socket, then has P different
patients press "I need help", spread across the rooms, and times each press (the help
message sent) until the dashboard shows the event. A background of chat keeps the rooms
busy while presses are measured.

    python bench/crisis.py [--rooms 20] [--presses 100] [--interval 0.1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from processes import consent_and_check_in, free_port, server_env  # noqa: E402  (bench/processes.py)

GROUP_SIZE = 12
SEEN_TIMEOUT_S = 5.0
WAIT_S = 30.0


# Seeding ------------------------------------------------------------------------------------


async def seed_rooms(env: dict[str, str], demo: dict[str, Any], rooms: int) -> list[dict[str, Any]]:
    """K groups of 12 fictional patients, ready to enter their next session's room."""
    from server.accounts import joinlinks
    from server.catalog import patients as catalog_patients
    from server.catalog import schedule as catalog_schedule
    from server.catalog.schemas import GroupIn, PatientIn, SlotIn
    from server.config import Settings
    from server.demo import DEMO_TIME_ZONE, WEEKLY
    from server.phi import ensure_keyring
    from server.storage.engine import create_engine

    settings = Settings.from_env(env)
    keyring, _ = ensure_keyring(settings.secret_key_file)
    engine = create_engine(settings.database_url)
    now = dt.datetime.now(dt.UTC)
    clinicians = [m["id"] for m in demo["staff"] if m["role"] == "clinician"]
    out = []
    try:
        for number in range(rooms):
            async with engine.begin() as conn:
                patients = []
                for seat in range(GROUP_SIZE):
                    patient = await catalog_patients.create_patient(
                        conn,
                        keyring,
                        PatientIn(
                            program_id=demo["program"]["id"],
                            legal_name=f"Bench R{number} P{seat} Example",
                            display_name=f"R{number}P{seat}",
                            date_of_birth=dt.date(1990, 1, 1),
                            home_address="1 Example Street, Example Valley, CA 00000 (example)",
                            backup_phone="(555) 010-0150",
                            time_zone=DEMO_TIME_ZONE,
                        ),
                        now,
                    )
                    patients.append(patient["id"])
                group = await catalog_schedule.create_group(
                    conn,
                    GroupIn(
                        program_id=demo["program"]["id"],
                        name=f"Benchmark group {number}",
                        lead_clinician_id=clinicians[0],
                        cofacilitator_id=clinicians[1],
                        member_ids=patients,
                        time_zone=DEMO_TIME_ZONE,
                        schedule=[SlotIn(day=day, start="18:00", end="21:00") for day in WEEKLY],
                        template="evening-group-180",
                        starts_on=now.date(),
                    ),
                    now,
                    settings.schedule_horizon_days,
                )
                links = []
                session_id = ""
                for patient_id in patients:
                    slots = await joinlinks.patient_sessions(conn, patient_id, now)
                    session_id = slots[0].session_id
                    link = await joinlinks.issue(
                        conn,
                        patient_id=patient_id,
                        session_id=session_id,
                        issued_by=clinicians[0],
                        now=now,
                        grace=dt.timedelta(minutes=60),
                        standing_for=dt.timedelta(days=30),
                    )
                    links.append(f"{settings.public_url}/j/{link.token}")
                    await consent_and_check_in(conn, keyring, patient_id, session_id)
            out.append({"group_id": group["id"], "session_id": session_id, "links": links})
    finally:
        await engine.dispose()
    return out


# Driving ------------------------------------------------------------------------------------


class Socket:
    """One WebSocket and a task that reads everything it is sent."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.me = ""
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.on_message: Any = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(frame.data)
            if self.on_message is not None:
                self.on_message(message)
            else:
                self.inbox.put_nowait(message)

    async def until(self, match: Any) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await self.inbox.get()
                if match(message):
                    return message

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _sign_in(base: str, ssl_ctx: ssl.SSLContext, member: dict[str, Any]) -> Any:
    client = aiohttp.ClientSession(
        base_url=base,
        connector=aiohttp.TCPConnector(ssl=ssl_ctx),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Origin": base},  # as a browser on the server's pages (sockets need it)
    )
    totp = pyotp.TOTP(member["totp_secret"])
    for code in (totp.now(), totp.at(time.time() + 30)):
        signed = await client.post(
            "/api/auth/session",
            json={"email": member["email"], "password": member["password"], "code": code},
        )
        if signed.status == 200:
            return client
    raise RuntimeError(f"sign-in failed: {signed.status}")


async def _room_socket(http: aiohttp.ClientSession, session_id: str) -> Socket:
    ws = await http.ws_connect(f"/ws/rooms/{session_id}", heartbeat=None)
    sock = Socket(http, ws)
    await ws.send_json({"type": "hello", "protocol": 1})
    first = await sock.until(lambda m: m["type"] in ("snapshot", "error"))
    if first["type"] == "error":
        raise RuntimeError(f"room refused: {first['code']}")
    sock.me = first["you"]["id"]
    return sock


async def open_room(
    base: str, ssl_ctx: ssl.SSLContext, host_http: Any, room: dict[str, Any]
) -> tuple[Socket, list[Socket]]:
    """The clinician hosts; every patient opens their link, waits and is admitted."""
    host = await _room_socket(host_http, room["session_id"])
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
        patients.append(await _room_socket(http, room["session_id"]))
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


async def run(rooms: int, presses: int, interval: float, chatter: float) -> dict[str, Any]:
    """Start a server with K live rooms, press help P times, report latencies."""
    presses = min(presses, rooms * GROUP_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        port = free_port()
        env = server_env(data_dir, port)
        made = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "demo",
            "--json",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await made.communicate()
        demo = json.loads(out)
        began = time.perf_counter()
        seeded = await seed_rooms(env, demo, rooms)
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
        )
        sockets: list[Socket] = []
        clients: list[Any] = []
        background: list[asyncio.Task[None]] = []
        try:
            base = f"https://127.0.0.1:{port}"
            ca = data_dir / "certs" / "ca.crt"
            for _ in range(300):
                if ca.exists():
                    break
                await asyncio.sleep(0.1)
            ssl_ctx = ssl.create_default_context(cafile=str(ca))
            for _ in range(300):
                try:
                    async with (
                        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as c,
                        c.get(base + "/healthz") as response,
                    ):
                        if response.status == 200:
                            break
                except (aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.1)
            by_role = {m["role"]: m for m in demo["staff"]}
            host_http = await _sign_in(base, ssl_ctx, by_role["clinician"])
            supervisor_http = await _sign_in(base, ssl_ctx, by_role["supervisor"])
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
            server.send_signal(signal.SIGTERM)
            await server.wait()
    return {
        "machine": (
            f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.rooms, args.presses, args.interval, args.chatter))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['machine']}; {result['rooms']} rooms x {GROUP_SIZE} patients, "
        f"{result['presses']} presses, chatter {args.chatter:g}/s"
    )
    print(
        f"  press -> dashboard  p50 {result['p50_ms']} ms  p90 {result['p90_ms']} ms  "
        f"p99 {result['p99_ms']} ms  max {result['max_ms']} ms  lost {result['lost']}"
    )


if __name__ == "__main__":
    main()
