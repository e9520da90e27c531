"""Scale-out benchmark: K group rooms with media on N nodes, one node killed mid-run.

Creates a fresh PostgreSQL database and a random Redis prefix, seeds K groups of P-1
patients (consented, checked in) with `bench/sfu.py`'s seeding, starts N
`python -m server serve` nodes in multi-node mode (shared DATABASE_URL and REDIS_URL, a
short IOP_LEASE_SECONDS) and places the rooms round-robin on the nodes: each room's host
socket goes first to the chosen node, which takes the room's lease; patients open their
sockets on any node and follow the `redirect` (close 4307) to the holder. Every
participant is a real aiortc peer (ICE/DTLS) sending VP8 + Opus as raw SRTP through the
SFU, as in `bench/sfu.py`.

A supervisor's dashboard socket is connected to a node without rooms (or with the
fewest), and moved to another node before the kill if it is on the node to be killed.
Patients press "I need help" one after another (each patient once); the benchmark times
press -> `event` (raised) on the dashboard, acknowledges every event from the dashboard
and times the `done` answer. Presses in rooms held by another node than the dashboard's
measure cross-node delivery (`crisis_p99_ms`); `lost` counts presses never shown and
acknowledgements never answered.

After `--seconds` the busiest node (most rooms, read from Redis) is killed with SIGKILL.
Its rooms' clients see their sockets drop and try the nodes in turn (the dead node
refuses; a live one redirects to the holder of record or answers 1013 "try again" until
the dead node's lease runs out, then takes the room); they say hello again, the host
admits everyone again, each re-sends `media_join` with a new peer connection. Failover
of a room is the time from the kill until every one of its participants has received a
media packet on its new peer connection (`failover_s_*`); `failover_full_s_*` is until
every participant receives video from every other participant again. The run then goes
on for `--seconds`.

    python bench/scale.py [--nodes 2] [--rooms 4] [--participants 13] [--seconds 15] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import secrets
import signal
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import sfu  # noqa: E402  (bench/sfu.py: media, peers, seeding)
from processes import free_port, server_env  # noqa: E402  (bench/processes.py)

POSTGRES_ADMIN_URL = os.environ.get(
    "IOP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("IOP_BENCH_REDIS", "redis://127.0.0.1:6379/0")
LEASE_S = 5
PING_S = 10.0
RETRY_S = 0.5
FAILOVER_LIMIT_S = 60.0
CRISIS_WAIT_S = 30.0


# Load generator (worker processes) ---------------------------------------------------------


class Peer(sfu.Participant):
    """An sfu.py participant that can start over with a new peer connection."""

    def __init__(self, name: str, stats: sfu.WorkerStats) -> None:
        super().__init__(name, stats)
        self.first_rx: float | None = None  # first RTP packet on the current connection
        self.full_at: float | None = None  # video from everyone else on it
        self.resets: list[float] = []

    def _on_rtp(self, data: bytes) -> None:
        if self.first_rx is None:
            self.first_rx = time.time()
        super()._on_rtp(data)

    async def reset(self) -> None:
        """A new socket on a (maybe) new node: the old connection is of no more use."""
        if self.pc is None:
            return
        self.resets.append(time.time())
        pc, wire = self.pc, self.wire
        self.pc = self.wire = None
        self.send, self.publish, self.video_ssrcs = {}, {}, set()
        self.frames = Counter()
        self.first_rx = self.full_at = None
        if wire is not None:
            wire.untap()
        with contextlib.suppress(Exception):
            await pc.close()


class Client:
    """One participant's room socket: reconnects, follows redirects, re-joins media."""

    def __init__(
        self,
        spec: dict[str, Any],
        peer: Peer,
        http: aiohttp.ClientSession,
        nodes: list[str],
        first: str,
    ) -> None:
        self.spec = spec
        self.peer = peer
        self.http = http
        self.nodes = nodes  # every node's base URL, tried in turn after a drop
        self.first = first
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.node: str | None = None
        self.admitted = False
        self.snapshot = asyncio.Event()
        self.drops = 0
        self.redirects = 0
        self.try_again = 0
        self.rejoins = 0
        self.pending_help: dict[str, Any] | None = None  # a press not yet confirmed stored
        self.help_resent = 0
        self.closes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    @staticmethod
    def node_of(url: str) -> str:
        return str(URL(url).port)

    def _url(self, base: str) -> str:
        ws = URL(base).with_scheme("wss").with_path(f"/ws/rooms/{self.spec['session_id']}")
        return str(ws)

    async def run(self) -> None:
        url = self._url(self.first)
        turn = random.randrange(len(self.nodes))
        while True:
            follow = await self._connect(url)
            if follow is not None:
                self.redirects += 1
                url = follow
                continue
            await asyncio.sleep(RETRY_S * (0.5 + random.random()))
            turn = (turn + 1) % len(self.nodes)
            url = self._url(self.nodes[turn])

    async def _connect(self, url: str) -> str | None:
        try:
            # The page a browser would have opened this from: the node it connects to.
            origin = str(URL(url).with_scheme("https").origin())
            ws = await self.http.ws_connect(url, heartbeat=None, origin=origin)
        except (aiohttp.ClientError, OSError):
            return None
        self.ws = ws
        self.node = self.node_of(url)
        follow: str | None = None
        joined = False
        try:
            await ws.send_json({"type": "hello", "protocol": 1, "last_seq": None})
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    break
                message = json.loads(frame.data)
                kind = message["type"]
                if kind == "redirect":
                    follow = message["url"]
                elif kind in ("snapshot", "resync"):
                    self.snapshot.set()
                    if self.pending_help is not None:
                        # As the browser does: a press not confirmed as stored goes again.
                        self.help_resent += 1
                        await ws.send_json(self.pending_help)
                    admitted = message["you"]["presence"] == "admitted"
                    self.admitted = admitted
                    if self.spec["host"]:
                        await ws.send_json({"type": "admit_all"})
                    if admitted and not joined:
                        joined = True
                        await self.peer.reset()
                        await ws.send_json({"type": "media_join"})
                elif kind == "member":
                    member = message["member"]
                    if self.spec["host"] and member["presence"] == "waiting":
                        await ws.send_json({"type": "admit", "member_id": member["id"]})
                elif kind == "media_offer":
                    pc = self.peer.pc
                    try:
                        if pc is not None and pc.signalingState == "closed":
                            # The server closed this connection (DTLS ended): start over.
                            raise ConnectionResetError("peer connection closed")
                        sdp = await self.peer.on_offer(message)
                    except Exception:
                        self.rejoins += 1
                        await self.peer.reset()
                        await ws.send_json({"type": "media_join"})
                        continue
                    await ws.send_json({"type": "media_answer", "sdp": sdp})
                elif kind == "help_received":
                    pending = self.pending_help
                    if pending is not None and message.get("press_id") == pending["press_id"]:
                        self.pending_help = None
                elif kind == "error":
                    code = message.get("code", "")
                    if code == "try_again":
                        self.try_again += 1
                    else:
                        self.errors[code] += 1
        except (aiohttp.ClientError, OSError, ConnectionError, RuntimeError):
            pass
        finally:
            self.ws = None
            self.node = None
            self.admitted = False
            if joined:
                self.drops += 1
                self.closes[f"{ws.close_code}@{self.node_of(url)}"] += 1
            with contextlib.suppress(Exception):
                await ws.close()
        return follow

    async def send(self, message: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_json(message)
        except (aiohttp.ClientError, OSError, ConnectionError, RuntimeError):
            return False
        return True


def _client_session(ssl_ctx: ssl.SSLContext) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_ctx),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )


async def _worker(conn: Connection, config: dict[str, Any]) -> None:
    from rooms.media import hooks

    hooks.use_host_addresses(["127.0.0.1"])
    ssl_ctx = ssl.create_default_context(cafile=config["ca"])
    nodes: list[str] = config["nodes"]
    stats = sfu.WorkerStats()
    clients: list[Client] = []
    sessions: list[aiohttp.ClientSession] = []
    tasks: list[asyncio.Task[Any]] = []
    host_http = _client_session(ssl_ctx)
    host_http.cookie_jar.update_cookies(config["cookies"], URL(nodes[0]))
    sessions.append(host_http)
    failed: list[str] = []

    async def open_room(room: dict[str, Any]) -> None:
        try:
            first = nodes[room["node"]]
            host_spec = {"session_id": room["session_id"], "host": True, "room": room["index"]}
            host = Client(host_spec, Peer(f"r{room['index']}-host", stats), host_http, nodes, first)
            clients.append(host)
            tasks.append(asyncio.create_task(host.run()))
            async with asyncio.timeout(60):
                await host.snapshot.wait()  # the room's lease is now on the chosen node
            for seat, patient in enumerate(room["patients"], start=1):
                http = _client_session(ssl_ctx)
                sessions.append(http)
                # Land on any node: the link's page and the socket are sent to the holder.
                base = nodes[(room["node"] + seat) % len(nodes)]
                link = URL(patient["join_url"])
                async with http.get(str(URL(base).with_path(link.path))) as landing:
                    landing.raise_for_status()
                spec = {
                    "session_id": room["session_id"],
                    "host": False,
                    "room": room["index"],
                    "name": patient["name"],
                }
                client = Client(spec, Peer(patient["name"], stats), http, nodes, base)
                clients.append(client)
                tasks.append(asyncio.create_task(client.run()))
        except Exception as exc:  # reported to the coordinator, which stops the run
            failed.append(f"room {room['index']}: {exc!r}")

    openers = [asyncio.create_task(open_room(room)) for room in config["rooms"]]

    media = config["media"]
    video, audio = media["video"], media["audio"]
    others = config["participants"] - 1

    def video_tick(count: int) -> None:
        payloads = video[count % len(video)]
        for client in clients:
            client.peer.send_frame("video", payloads, 90000 // sfu.VIDEO_FPS)

    def audio_tick(count: int) -> None:
        payload = [audio[count % len(audio)]]
        for client in clients:
            client.peer.send_frame("audio", payload, int(48000 * sfu.AUDIO_PTIME))

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.time()
            for client in clients:
                peer = client.peer
                if peer.full_at is None and peer.pc is not None and peer.ready(others):
                    peer.full_at = now

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(PING_S)
            for client in list(clients):
                await client.send({"type": "ping", "t": time.time()})

    tasks += [
        asyncio.create_task(sfu._pace(1 / sfu.VIDEO_FPS, video_tick)),
        asyncio.create_task(sfu._pace(sfu.AUDIO_PTIME, audio_tick)),
        asyncio.create_task(watch()),
        asyncio.create_task(heartbeat()),
    ]

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    cpu_mark = sfu._cpu_self()
    while True:
        command, arg = await commands.get()
        if command == "ready":
            crashed = [repr(t.exception()) for t in tasks if t.done() and t.exception()]
            conn.send(
                {
                    "ready": sum(c.peer.ready(others) for c in clients),
                    "clients": len(clients),
                    "failed": failed + crashed,
                }
            )
        elif command == "press":
            # The next patient of room `arg` who is in the room now and has not pressed.
            pressed = None
            for client in clients:
                spec = client.spec
                if spec["room"] != arg or spec["host"] or spec.get("pressed"):
                    continue
                if not client.admitted or client.node is None:
                    continue
                node = client.node
                at = time.time()
                client.pending_help = {"type": "help", "text": "", "press_id": f"p{id(client)}"}
                if not await client.send(client.pending_help):
                    client.pending_help = None  # not sent: another patient presses instead
                else:
                    spec["pressed"] = True
                    pressed = {
                        "session_id": spec["session_id"],
                        "name": spec["name"],
                        "node": node,
                        "at": at,
                    }
                    break
            conn.send(pressed)
        elif command == "report":
            conn.send(
                {
                    "cpu": sfu._cpu_self() - cpu_mark,
                    "sent": stats.sent,
                    "received": stats.received,
                    "peers": [
                        {
                            "room": c.spec["room"],
                            "name": c.peer.name,
                            "resets": c.peer.resets,
                            "first_rx": c.peer.first_rx,
                            "full_at": c.peer.full_at,
                            "drops": c.drops,
                            "redirects": c.redirects,
                            "try_again": c.try_again,
                            "rejoins": c.rejoins,
                            "help_resent": c.help_resent,
                            "help_unconfirmed": c.pending_help is not None,
                            "errors": dict(c.errors),
                            "closes": dict(c.closes),
                            "node": c.node,
                        }
                        for c in clients
                    ],
                }
            )
        elif command == "quit":
            break
    loop.remove_reader(conn.fileno())
    for task in tasks + openers:
        task.cancel()
    await asyncio.gather(*tasks, *openers, return_exceptions=True)
    for client in clients:
        with contextlib.suppress(Exception):
            await client.peer.close()
    for http in sessions:
        await http.close()
    conn.send("bye")


def _worker_main(conn: Connection, config: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_worker(conn, config))


class Worker:
    """A load-generator process and its command pipe (one request at a time)."""

    def __init__(self, config: dict[str, Any]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, config), daemon=True)
        self.proc.start()
        self.lock = asyncio.Lock()

    async def ask(self, command: str, arg: Any = None) -> Any:
        async with self.lock:
            self.pipe.send((command, arg))
            return await asyncio.get_running_loop().run_in_executor(None, self.pipe.recv)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ask("quit"), 20)
        await asyncio.get_running_loop().run_in_executor(None, self.proc.join, 10)
        if self.proc.is_alive():
            self.proc.kill()


# Nodes, database, Redis ---------------------------------------------------------------------


async def _create_database() -> tuple[str, str]:
    import asyncpg

    name = f"iop_scale_{secrets.token_hex(5)}"
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


async def _drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def unreachable() -> str | None:
    """Why the benchmark cannot run here (PostgreSQL or Redis away), or None."""
    import asyncpg
    from redis.asyncio import Redis

    try:
        conn = await asyncio.wait_for(asyncpg.connect(POSTGRES_ADMIN_URL), 5)
        await conn.close()
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({type(exc).__name__})"
    redis = Redis.from_url(REDIS_URL)
    try:
        await asyncio.wait_for(redis.ping(), 5)
    except Exception as exc:
        return f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__})"
    finally:
        await redis.aclose()
    return None


class Node:
    def __init__(self, node_id: str, port: int, env: dict[str, str]) -> None:
        self.id = node_id
        self.port = port
        self.base = f"https://127.0.0.1:{port}"
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: list[bytes] = []
        self.drain: asyncio.Task[None] | None = None

    async def start(self, log_dir: str | None = None) -> None:
        out: Any = asyncio.subprocess.PIPE
        if log_dir:
            out = open(Path(log_dir) / f"{self.id}.log", "ab")  # noqa: ASYNC230, SIM115
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            env={**self.env, "IOP_LOG_LEVEL": "info"} if log_dir else self.env,
            cwd=ROOT,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        if log_dir:
            out.close()
        self.drain = asyncio.create_task(sfu._drain(self.proc.stdout, self.tail))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 15)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.drain is not None:
            await self.drain


async def _sign_in(http: aiohttp.ClientSession, base: str, member: dict[str, Any]) -> None:
    totp = pyotp.TOTP(member["totp_secret"])
    for code in (totp.now(), totp.at(time.time() + 30)):
        async with http.post(
            base + "/api/auth/session",
            json={"email": member["email"], "password": member["password"], "code": code},
        ) as signed:
            if signed.status == 200:
                return
    raise RuntimeError(f"sign-in of {member['email']} failed")


def _match(
    presses: list[dict[str, Any]], arrivals: list[tuple[str, str | None, float]]
) -> dict[tuple[str, str], float]:
    """When each press was shown on the dashboard: (session, patient) -> time.

    The dashboard names the patient only when the room lives on its own node; otherwise
    a raised event is matched to the earliest unmatched press of its session before it.
    """
    used: set[int] = set()
    seen: dict[tuple[str, str], float] = {}
    ordered = sorted(presses, key=lambda p: p["at"])
    for named_only in (True, False):
        for press in ordered:
            key = (press["session_id"], press["name"])
            if key in seen:
                continue
            for index, (session_id, name, at) in enumerate(arrivals):
                if index in used or session_id != press["session_id"] or at < press["at"]:
                    continue
                if (name == press["name"]) if named_only else name is None:
                    used.add(index)
                    seen[key] = at
                    break
    return seen


_STARTED = time.monotonic()


def _say(text: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# The run ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from redis.asyncio import Redis

    media = sfu.encode_media()
    db_name, db_url = await _create_database()
    prefix = f"iop-scale-{secrets.token_hex(4)}:"
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    nodes: list[Node] = []
    workers: list[Worker] = []
    closers: list[Any] = []
    background: list[asyncio.Task[Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            shared = {
                "DATABASE_URL": db_url,
                "REDIS_URL": REDIS_URL,
                "IOP_REDIS_PREFIX": prefix,
                "IOP_LEASE_SECONDS": str(args.lease),
            }
            for index in range(args.nodes):
                port = free_port()
                env = {
                    **server_env(data_dir, port),
                    **shared,
                    "IOP_NODE_ID": f"n{index}",
                    "IOP_NODE_URL": f"https://127.0.0.1:{port}",
                }
                nodes.append(Node(f"n{index}", port, env))
            seed_env = nodes[0].env
            demo = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server",
                "demo",
                "--json",
                env=seed_env,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await demo.communicate()
            if demo.returncode != 0:
                raise RuntimeError("seeding the demo program failed")
            staff = {m["role"]: m for m in json.loads(out)["staff"]}
            began = time.monotonic()
            rooms = await sfu._seed(seed_env, args.rooms, args.participants)
            ca = data_dir / "certs" / "ca.crt"
            # The first node makes the certificates the others share.
            await nodes[0].start(args.log_dir)
            await sfu._wait_ready(nodes[0].base, ca, nodes[0].proc)
            for node in nodes[1:]:
                await node.start(args.log_dir)
            for node in nodes[1:]:
                await sfu._wait_ready(node.base, ca, node.proc)
            ssl_ctx = ssl.create_default_context(cafile=str(ca))
            _say(f"{len(nodes)} nodes up; {args.rooms} rooms seeded")

            host_http = _client_session(ssl_ctx)
            board_http = _client_session(ssl_ctx)
            closers += [host_http, board_http]
            await _sign_in(host_http, nodes[0].base, staff["clinician"])
            await _sign_in(board_http, nodes[-1].base, staff["supervisor"])
            cookies = {c.key: c.value for c in host_http.cookie_jar}

            # Rooms round-robin over the nodes, each room whole in one generator process.
            plan = []
            for index, room in enumerate(rooms):
                plan.append(
                    {
                        "index": index,
                        "session_id": room["session_id"],
                        "node": index % args.nodes,
                        "patients": [
                            {"join_url": p["join_url"], "name": f"G{index}P{seat}"}
                            for seat, p in enumerate(room["patients"])
                        ],
                    }
                )
            shares: list[list[dict[str, Any]]] = [[] for _ in range(args.workers)]
            for room in plan:
                shares[room["index"] % args.workers].append(room)
            owner: dict[int, Worker] = {}
            workers_started = time.time()
            for share in (s for s in shares if s):
                worker = Worker(
                    {
                        "rooms": share,
                        "nodes": [n.base for n in nodes],
                        "cookies": cookies,
                        "ca": str(ca),
                        "media": media,
                        "participants": args.participants,
                    }
                )
                workers.append(worker)
                for room in share:
                    owner[room["index"]] = worker

            # Everyone connected and receiving video from everyone else in the room.
            total = args.rooms * args.participants
            ready = 0
            deadline = time.monotonic() + args.ready_within
            while time.monotonic() < deadline:
                answers = await asyncio.gather(*(w.ask("ready") for w in workers))
                failed = [f for a in answers for f in a["failed"]]
                if failed:
                    raise RuntimeError(f"a load generator failed: {failed[:3]}")
                ready = sum(a["ready"] for a in answers)
                if ready == total:
                    break
                await asyncio.sleep(0.5)
            setup_s = time.monotonic() - began
            _say(f"{ready} of {total} peers receive video from everyone in their room")

            holders = {
                room["index"]: await redis.get(f"{prefix}room:{room['session_id']}")
                for room in plan
            }

            # The supervisor's dashboard, acknowledging every event it is shown: on a node
            # without rooms if there is one, else the one with the fewest (the last on a tie).
            def fewest_rooms(among: list[Node], held: dict[int, str | None]) -> Node:
                counts = Counter(held.values())
                return min(reversed(among), key=lambda n: counts.get(n.id, 0))

            arrivals: list[tuple[str, str | None, float]] = []
            acked: dict[str, float] = {}
            done: dict[str, float] = {}
            board: dict[str, Any] = {}

            async def read_board(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for frame in ws:
                    if frame.type is not aiohttp.WSMsgType.TEXT:
                        return
                    now = time.time()
                    message = json.loads(frame.data)
                    if message["type"] == "event" and message["kind"] == "raised":
                        event = message["event"]
                        if event["id"] not in acked:
                            arrivals.append((event["session_id"], event["patient_name"], now))
                            acked[event["id"]] = now
                            await ws.send_json(
                                {"type": "ack", "event_id": event["id"], "ref": event["id"]}
                            )
                    elif message["type"] == "done" and message.get("action") == "ack":
                        done.setdefault(message["event_id"], now)
                    elif message["type"] == "error":
                        print(f"dashboard: {message}", file=sys.stderr)

            async def open_board(node: Node) -> None:
                ws = await board_http.ws_connect(
                    node.base.replace("https", "wss") + "/ws/dashboard",
                    heartbeat=None,
                    origin=node.base,
                )
                await ws.send_json({"type": "hello", "protocol": 1})
                async with asyncio.timeout(30):
                    while True:
                        first = json.loads((await ws.receive()).data)
                        if first["type"] == "snapshot":
                            break
                old = board.get("ws")
                board.update(ws=ws, node=node)
                background.append(asyncio.create_task(read_board(ws)))
                if old is not None:
                    await old.close()

            async def board_ping() -> None:
                while True:
                    await asyncio.sleep(PING_S)
                    with contextlib.suppress(Exception):
                        await board["ws"].send_json({"type": "ping", "t": time.time()})

            await open_board(fewest_rooms(nodes, holders))
            background.append(asyncio.create_task(board_ping()))

            presses: list[dict[str, Any]] = []

            async def press_loop() -> None:
                turn = 0
                while True:
                    await asyncio.sleep(args.press_interval)
                    for _ in range(len(plan)):
                        room = plan[turn % len(plan)]
                        turn += 1
                        pressed = await owner[room["index"]].ask("press", room["index"])
                        if pressed is not None:
                            pressed["room"] = room["index"]
                            pressed["cross_node"] = pressed["node"] != str(board["node"].port)
                            presses.append(pressed)
                            break

            pressing = asyncio.create_task(press_loop())
            background.append(pressing)

            # Every change of a room's holder, to tell planned moves from lapsed leases.
            moves: list[dict[str, Any]] = []
            last = dict(holders)

            async def watch_holders() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    for room in plan:
                        holder = await redis.get(f"{prefix}room:{room['session_id']}")
                        if holder is not None and holder != last[room["index"]]:
                            moves.append({"room": room["index"], "to": holder, "at": time.time()})
                            last[room["index"]] = holder

            background.insert(0, asyncio.create_task(watch_holders()))

            def cpu_marks() -> dict[str, float]:
                return {n.id: sfu._cpu_of(n.proc.pid) for n in nodes if n.proc and n.alive}

            # Before the kill.
            gen_mark = await asyncio.gather(*(w.ask("report") for w in workers))
            mark, t0 = cpu_marks(), time.monotonic()
            await asyncio.sleep(args.seconds)
            before_cpu = {
                k: (v2 - mark[k]) / (time.monotonic() - t0) for k, v2 in cpu_marks().items()
            }
            gen_before = await asyncio.gather(*(w.ask("report") for w in workers))
            received_before = sum(g["received"] for g in gen_before) - sum(
                g["received"] for g in gen_mark
            )
            window_s = time.monotonic() - t0

            # Kill the busiest node (the most rooms now; the first on a tie), after moving
            # the dashboard off it if it is there.
            held_now = {
                room["index"]: await redis.get(f"{prefix}room:{room['session_id']}")
                for room in plan
            }
            counts = Counter(held_now.values())
            victim = max(nodes, key=lambda n: (counts.get(n.id, 0), -nodes.index(n)))
            dashboard_moved = board["node"] is victim
            if dashboard_moved:
                await open_board(fewest_rooms([n for n in nodes if n is not victim], held_now))
            moved_rooms = [i for i, h in held_now.items() if h == victim.id]
            assert victim.proc is not None
            killed_at = time.time()
            victim.proc.send_signal(signal.SIGKILL)
            await victim.proc.wait()
            _say(f"killed {victim.id} holding rooms {moved_rooms}")

            # Until every client of the moved rooms has media again (or the limit).
            def recovered(report: list[dict[str, Any]]) -> bool:
                peers = [p for r in report for p in r["peers"] if p["room"] in moved_rooms]
                return all(
                    p["resets"] and p["resets"][-1] > killed_at and p["full_at"] is not None
                    for p in peers
                )

            limit = time.monotonic() + FAILOVER_LIMIT_S
            while time.monotonic() < limit:
                await asyncio.sleep(0.5)
                if recovered(await asyncio.gather(*(w.ask("report") for w in workers))):
                    break
            _say(f"failover wait over after {time.time() - killed_at:.1f} s")
            mark, t0 = cpu_marks(), time.monotonic()
            await asyncio.sleep(args.seconds)
            after_cpu = {
                k: (v2 - mark[k]) / (time.monotonic() - t0) for k, v2 in cpu_marks().items()
            }
            pressing.cancel()  # no more presses
            wait_until = time.monotonic() + CRISIS_WAIT_S
            while time.monotonic() < wait_until:
                seen = _match(presses, arrivals)
                if len(seen) == len(presses) and all(e in done for e in acked):
                    break
                await asyncio.sleep(0.2)
            reports = await asyncio.gather(*(w.ask("report") for w in workers))
            reported_at = time.time()
            holders_after = {
                room["index"]: await redis.get(f"{prefix}room:{room['session_id']}")
                for room in plan
            }
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for worker in workers:
            await worker.stop()
        for client in closers:
            await client.close()
        for node in nodes:
            await node.stop()
        async for key in redis.scan_iter(match=f"{prefix}*"):
            await redis.delete(key)
        await redis.aclose()
        await _drop_database(db_name)

    # Failover per moved room: the kill -> every participant has media on a new connection.
    peers = [p for r in reports for p in r["peers"]]
    failover: dict[int, float | None] = {}
    failover_full: dict[int, float | None] = {}
    for room in moved_rooms:
        mine = [p for p in peers if p["room"] == room]
        again = [p for p in mine if p["resets"] and p["resets"][-1] > killed_at]
        firsts = [p["first_rx"] for p in again if p["first_rx"] is not None]
        fulls = [p["full_at"] for p in again if p["full_at"] is not None]
        failover[room] = max(firsts) - killed_at if len(firsts) == len(mine) else None
        failover_full[room] = max(fulls) - killed_at if len(fulls) == len(mine) else None
    recovered_s = [v for v in failover.values() if v is not None]
    full_s = [v for v in failover_full.values() if v is not None]
    not_recovered = [r for r, v in failover.items() if v is None]

    seen = _match(presses, arrivals)
    cross = [p for p in presses if p["cross_node"]]
    same = [p for p in presses if not p["cross_node"]]

    def latencies(group: list[dict[str, Any]]) -> list[float]:
        return [
            (seen[(p["session_id"], p["name"])] - p["at"]) * 1000
            for p in group
            if (p["session_id"], p["name"]) in seen
        ]

    cross_ms, same_ms = latencies(cross), latencies(same)
    lost_events = sum(1 for p in presses if (p["session_id"], p["name"]) not in seen)
    lost_acks = sum(1 for e in acked if e not in done)
    ack_ms = [(done[e] - t) * 1000 for e, t in acked.items() if e in done]
    gen_cpu = [round(r["cpu"] / max(1e-9, reported_at - workers_started), 3) for r in reports]
    received_after = sum(r["received"] for r in reports)
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {
        "machine": f"{platform.machine()} {cores} cores, Python {platform.python_version()}",
        "nodes": args.nodes,
        "rooms": args.rooms,
        "participants": args.participants,
        "seconds": args.seconds,
        "lease_s": args.lease,
        "ready_peers": ready,
        "peers": total,
        "setup_s": round(setup_s, 1),
        "placement": {str(i): h for i, h in holders.items()},
        "placement_at_kill": {str(i): h for i, h in held_now.items()},
        "killed_node": victim.id,
        "dashboard_node": board["node"].id,
        "dashboard_moved_before_kill": dashboard_moved,
        "rooms_moved": len(moved_rooms),
        "rooms_recovered": len(recovered_s),
        "rooms_not_recovered": not_recovered,
        "failover_s_p50": _r(_pct(recovered_s, 50), 2),
        "failover_s_max": _r(max(recovered_s), 2) if recovered_s and not not_recovered else None,
        "failover_full_s_p50": _r(_pct(full_s, 50), 2),
        "failover_full_s_max": (
            _r(max(full_s), 2) if full_s and len(full_s) == len(moved_rooms) else None
        ),
        "failover_by_room": {
            str(room): {
                "first_media_s": _r(failover[room], 2),
                "full_s": _r(failover_full[room], 2),
            }
            for room in moved_rooms
        },
        "placement_after": {str(i): h for i, h in holders_after.items()},
        "holder_changes_before_kill": sum(1 for m in moves if m["at"] < killed_at),
        "holder_changes_after_kill": sum(1 for m in moves if m["at"] >= killed_at),
        "reconnects": sum(p["drops"] for p in peers),
        "try_again_answers": sum(p["try_again"] for p in peers),
        "redirects_followed": sum(p["redirects"] for p in peers),
        "media_rejoins": sum(p["rejoins"] for p in peers),
        "help_resent": sum(p["help_resent"] for p in peers),
        "help_unconfirmed": sum(p["help_unconfirmed"] for p in peers),
        "closes": dict(sum((Counter(p["closes"]) for p in peers), Counter())),
        "server_errors": dict(sum((Counter(p["errors"]) for p in peers), Counter())),
        "presses": len(presses),
        "presses_cross_node": len(cross),
        "crisis_p50_ms": _r(_pct(cross_ms, 50)),
        "crisis_p99_ms": _r(_pct(cross_ms, 99)),
        "crisis_same_node_p50_ms": _r(_pct(same_ms, 50)),
        "crisis_same_node_p99_ms": _r(_pct(same_ms, 99)),
        "events_shown": len(arrivals),
        "ack_p99_ms": _r(_pct(ack_ms, 99)),
        "lost_events": lost_events,
        "lost_events_cross_node": sum(1 for p in cross if (p["session_id"], p["name"]) not in seen),
        "lost_acks": lost_acks,
        "lost": lost_events + lost_acks,
        "node_cpu_cores_before_kill": {k: round(v, 3) for k, v in before_cpu.items()},
        "node_cpu_cores_after_kill": {k: round(v, 3) for k, v in after_cpu.items()},
        "forwarded_pps_before_kill": round(received_before / window_s, 1),
        "expected_pps": round(
            args.rooms
            * args.participants
            * (args.participants - 1)
            * (media["video_pps"] + 1 / sfu.AUDIO_PTIME)
        ),
        "generator_cpu_cores": gen_cpu,
        "packets_received_total": received_after,
    }
    busy = sum(before_cpu.values()) + sum(gen_cpu)
    if ready < total or busy > 0.85 * cores:
        result["saturated"] = (
            f"{ready} of {total} peers received video from everyone in their room before the "
            f"kill; nodes used {sum(before_cpu.values()):.2f} and load generators "
            f"{sum(gen_cpu):.2f} of {cores} cores"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--participants", type=int, default=13, help="per room, host included")
    parser.add_argument("--seconds", type=float, default=15.0, help="before and after the kill")
    parser.add_argument("--lease", type=int, default=LEASE_S, help="IOP_LEASE_SECONDS")
    parser.add_argument("--press-interval", type=float, default=0.5)
    parser.add_argument("--ready-within", type=float, default=90.0)
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--log-dir", help="keep each node's log here (at info level)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.nodes < 2:
        parser.error("--nodes must be at least 2 (one is killed)")
    if args.participants < 2:
        parser.error("--participants must be at least 2")
    if reason := asyncio.run(unreachable()):
        print(f"cannot run: {reason}", file=sys.stderr)
        sys.exit(2)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"  {key:<32} {value}")


if __name__ == "__main__":
    main()
