"""Multi-node mode with real node processes on loopback, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from yarl import URL

from rooms.closecodes import CloseCode
from server.appkeys import CLOCK, ENGINE
from tests.conftest import (
    CSRF,
    ROOT,
    _create_postgres_database,
    _drop_postgres_database,
    free_port,
)
from tests.integration.test_process import ServerProcess, _env, _run, _start

REDIS_URL = os.environ.get("IOP_TEST_REDIS", "redis://127.0.0.1:6379/0")
LEASE_S = 2


async def _redis_reason() -> str | None:
    client = Redis.from_url(REDIS_URL)
    try:
        await asyncio.wait_for(client.ping(), timeout=3)
    except (OSError, TimeoutError, RedisError) as exc:
        return f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__})"
    finally:
        await client.aclose()
    return None


@dataclass
class Cluster:
    """Nodes sharing one PostgreSQL database, one Redis prefix and one data directory."""

    data_dir: Path
    env: dict[str, str]
    prefix: str
    redis: Redis
    demo: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, ServerProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    async def start(self, node_id: str, **extra: str) -> ServerProcess:
        port = free_port()
        env = {**self.env, "IOP_NODE_ID": node_id, **extra}
        node = await _start(self.data_dir, port, **env)
        self.nodes[node_id] = node
        self.ports[node_id] = port
        return node

    def client(self) -> aiohttp.ClientSession:
        """One browser: its cookies (per host, not per port) reach every node."""
        ca = self.data_dir / "certs" / "ca.crt"
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca))),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def holder(self, room_id: str) -> str | None:
        value = await self.redis.get(f"{self.prefix}room:{room_id}")
        return value.decode() if value is not None else None


@pytest.fixture
async def cluster(tmp_path: Path, postgres_unavailable: str | None) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, postgres_unavailable) as running:
        yield running


@contextlib.asynccontextmanager
async def running_cluster(
    tmp_path: Path, postgres_unavailable: str | None
) -> AsyncIterator[Cluster]:
    """A fresh database with the demo program and a Redis prefix; nodes are started by
    the test (`Cluster.start`) and stopped here."""
    reason = postgres_unavailable or await _redis_reason()
    if reason:
        pytest.skip(reason)
    name, url = await _create_postgres_database()
    prefix = f"iop-test-{secrets.token_hex(4)}:"
    redis = Redis.from_url(REDIS_URL)
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "IOP_REDIS_PREFIX": prefix,
        "IOP_LEASE_SECONDS": str(LEASE_S),
        "IOP_ICE_HOSTS": "127.0.0.1",
    }
    running = Cluster(tmp_path / "data", env, prefix, redis)
    try:
        seeded = _run(["demo", "--json"], _env(running.data_dir, free_port(), **env))
        assert seeded.returncode == 0, seeded.stderr
        running.demo = json.loads(seeded.stdout)
        yield running
    finally:
        for node in running.nodes.values():
            if node.process.returncode is None:
                await node.stop()
        async for key in redis.scan_iter(match=f"{prefix}*"):
            await redis.delete(key)
        await redis.aclose()
        await _drop_postgres_database(name)


async def _sign_in(
    cluster: Cluster, http: aiohttp.ClientSession, node: str, role: str = "clinician"
) -> None:
    host = next(m for m in cluster.demo["staff"] if m["role"] == role)
    response = await http.post(
        f"https://127.0.0.1:{cluster.ports[node]}/api/auth/session",
        json={
            "email": host["email"],
            "password": host["password"],
            "code": pyotp.TOTP(host["totp_secret"]).now(),
        },
    )
    assert response.status == 200, await response.text()


async def _ws(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """Open a socket as a page served by the node it goes to would (Origin: that node)."""
    return await http.ws_connect(url, origin=str(URL(url).with_scheme("https").origin()))


def _room_id(cluster: Cluster) -> str:
    return str(cluster.demo["groups"][0]["patients"][0]["join_session_id"])


async def _first(ws: aiohttp.ClientWebSocketResponse, *kinds: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive()
            assert message.type is aiohttp.WSMsgType.TEXT, (message.type, message.data)
            body = json.loads(message.data)
            if body["type"] in kinds:
                return body


async def _host_socket(
    cluster: Cluster, http: aiohttp.ClientSession, url: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await _ws(http, url)
    await ws.send_json({"type": "hello", "protocol": 1})
    return ws, await _first(ws, "snapshot", "redirect")


def _expected_left(clock: dict[str, Any], now: float) -> float:
    started = dt.datetime.fromisoformat(clock["phase_started_at"]).timestamp()
    planned = clock["phases"][clock["index"]]["minutes"] * 60 + clock["extension_s"]
    return float(planned - (now - started - clock["paused_s"]))


async def _group_sessions(cluster: Cluster, count: int) -> list[str]:
    import asyncpg

    url = cluster.env["DATABASE_URL"]
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT id FROM sessions WHERE group_id = $1 ORDER BY starts_at LIMIT $2",
            cluster.demo["groups"][0]["id"],
            count,
        )
    finally:
        await conn.close()
    return [row["id"] for row in rows]


async def test_nodes_racing_for_the_same_rooms_end_with_exactly_one_holder_each(
    cluster: Cluster,
) -> None:
    await cluster.start("a")
    await cluster.start("b")
    rooms = await _group_sessions(cluster, 6)
    assert len(rooms) >= 4
    async with cluster.client() as http:
        await _sign_in(cluster, http, "a")

        async def ask(node: str, room: str) -> tuple[str, int, str]:
            url = f"https://127.0.0.1:{cluster.ports[node]}/rooms/{room}"
            async with http.get(url, allow_redirects=False) as response:
                return node, response.status, response.headers.get("Location", "")

        for room in rooms:
            answers = await asyncio.gather(*(ask(n, room) for n in ("a", "b") * 8))
            holder = await cluster.holder(room)
            assert holder in ("a", "b")
            other = "b" if holder == "a" else "a"
            for node, status, location in answers:
                if node == holder:
                    assert status == 200
                else:
                    assert status == 307
                    assert location == (
                        f"https://127.0.0.1:{cluster.ports[holder]}/rooms/{room}?node={holder}"
                    )
            assert sum(1 for n, s, _ in answers if n == other and s == 200) == 0


async def test_a_node_at_its_room_limit_sends_a_new_room_to_a_node_with_room(
    cluster: Cluster,
) -> None:
    """IOP_ROOMS_PER_NODE spreads rooms; with every node full, a group is still served."""
    from tests.integration.test_crisis import until

    await cluster.start("a", IOP_ROOMS_PER_NODE="1")
    await cluster.start("b", IOP_ROOMS_PER_NODE="1")
    first, second, third = (await _group_sessions(cluster, 3))[:3]
    async with cluster.client() as http:
        await _sign_in(cluster, http, "a")

        async def page(node: str, room: str, query: str = "") -> tuple[int, str]:
            url = f"https://127.0.0.1:{cluster.ports[node]}/rooms/{room}{query}"
            async with http.get(url, allow_redirects=False) as response:
                return response.status, response.headers.get("Location", "")

        async def b_announces_its_room() -> bool:
            raw = await cluster.redis.get(f"{cluster.prefix}node:b")
            return raw is not None and json.loads(raw)["rooms"] == 1

        assert (await page("a", first))[0] == 200
        assert await cluster.holder(first) == "a"
        # a is full: a new room goes to b, which takes it when the client arrives.
        status, location = await page("a", second)
        assert status == 307
        assert location == f"https://127.0.0.1:{cluster.ports['b']}/rooms/{second}?node=b"
        assert await cluster.holder(second) is None
        assert (await page("b", second, "?node=b"))[0] == 200
        assert await cluster.holder(second) == "b"
        await until(b_announces_its_room)
        # Both full: the node asked serves it rather than turning the group away.
        assert (await page("a", third))[0] == 200
        assert await cluster.holder(third) == "a"


async def test_a_socket_to_the_node_without_the_room_is_redirected_to_its_holder(
    cluster: Cluster,
) -> None:
    await cluster.start("a")
    await cluster.start("b")
    room = _room_id(cluster)
    async with cluster.client() as http:
        await _sign_in(cluster, http, "a")
        first, snapshot = await _host_socket(
            cluster, http, f"https://127.0.0.1:{cluster.ports['a']}/ws/rooms/{room}?node=a"
        )
        assert snapshot["type"] == "snapshot"
        assert await cluster.holder(room) == "a"
        moved, redirect = await _host_socket(
            cluster, http, f"https://127.0.0.1:{cluster.ports['b']}/ws/rooms/{room}"
        )
        assert redirect == {
            "type": "redirect",
            "url": f"wss://127.0.0.1:{cluster.ports['a']}/ws/rooms/{room}?node=a",
            "page": f"https://127.0.0.1:{cluster.ports['a']}/rooms/{room}?node=a",
            "node": "a",
        }
        assert (await moved.receive()).type is aiohttp.WSMsgType.CLOSE
        assert moved.close_code == CloseCode.REDIRECT
        follow, again = await _host_socket(cluster, http, redirect["url"])
        assert again["type"] == "snapshot"
        for ws in (first, follow):
            await ws.close()


async def test_when_the_holder_is_killed_another_node_takes_the_room_with_its_clock(
    cluster: Cluster,
) -> None:
    a = await cluster.start("a")
    await cluster.start("b")
    room = _room_id(cluster)
    async with cluster.client() as http:
        await _sign_in(cluster, http, "a")
        ws, _ = await _host_socket(
            cluster, http, f"https://127.0.0.1:{cluster.ports['a']}/ws/rooms/{room}"
        )
        await ws.send_json({"type": "clock", "op": "start"})
        before = (await _first(ws, "clock"))["clock"]
        assert before["status"] == "running"
        await asyncio.sleep(0.5)  # the clock is written to the database behind the socket
        a.process.send_signal(signal.SIGKILL)
        await a.process.wait()
        await ws.close()
        snapshot: dict[str, Any] = {}
        async with asyncio.timeout(4 * LEASE_S + 10):
            while snapshot.get("type") != "snapshot":
                try:
                    reconnect, snapshot = await _host_socket(
                        cluster, http, f"https://127.0.0.1:{cluster.ports['b']}/ws/rooms/{room}"
                    )
                except (aiohttp.ClientError, AssertionError):
                    snapshot = {}
                if snapshot.get("type") != "snapshot":
                    await asyncio.sleep(0.3)
        assert await cluster.holder(room) == "b"
        after = snapshot["clock"]
        assert after["status"] == "running" and after["index"] == before["index"]
        expected = _expected_left(before, snapshot["server_time"])
        assert abs(after["remaining_s"] - expected) < 1.0
        await reconnect.close()


async def test_a_request_naming_the_holder_that_reaches_another_node_is_not_sent_back(
    cluster: Cluster,
) -> None:
    # Behind the proxy a request hinted `?node=a` reaches b only when the proxy could not
    # reach a: b must not redirect it to a again (the client would loop between them).
    await cluster.start("a")
    await cluster.start("b")
    room = _room_id(cluster)
    a, b = cluster.ports["a"], cluster.ports["b"]
    async with cluster.client() as http:
        await _sign_in(cluster, http, "a")
        first, snapshot = await _host_socket(
            cluster, http, f"wss://127.0.0.1:{a}/ws/rooms/{room}?node=a"
        )
        assert snapshot["type"] == "snapshot" and await cluster.holder(room) == "a"
        # Node a is alive and keeps renewing its lease: b waits it out, then says try again.
        fell_back = await _ws(http, f"wss://127.0.0.1:{b}/ws/rooms/{room}?node=a")
        await fell_back.send_json({"type": "hello", "protocol": 1})
        answer = await _first(fell_back, "snapshot", "redirect", "error")
        assert answer["type"] == "error" and answer["code"] == "try_again"
        assert (await fell_back.receive()).type is aiohttp.WSMsgType.CLOSE
        assert fell_back.close_code == CloseCode.TRY_AGAIN
        async with http.get(
            f"https://127.0.0.1:{b}/rooms/{room}?node=a", allow_redirects=False
        ) as page:
            assert page.status == 503 and page.headers["Retry-After"] == "1"
        assert await cluster.holder(room) == "a"
        # Once a is gone, the same request takes the room over on b.
        cluster.nodes["a"].process.send_signal(signal.SIGKILL)
        await cluster.nodes["a"].process.wait()
        await first.close()
        taken, snapshot = await _host_socket(
            cluster, http, f"wss://127.0.0.1:{b}/ws/rooms/{room}?node=a"
        )
        assert snapshot["type"] == "snapshot" and await cluster.holder(room) == "b"
        await taken.close()


async def test_drain_moves_a_live_room_and_its_clock_to_another_node(cluster: Cluster) -> None:
    await cluster.start("a")
    await cluster.start("b")
    room = _room_id(cluster)
    async with cluster.client() as http:
        await _sign_in(cluster, http, "a")
        ws, _ = await _host_socket(
            cluster, http, f"https://127.0.0.1:{cluster.ports['a']}/ws/rooms/{room}?node=a"
        )
        await ws.send_json({"type": "clock", "op": "start"})
        before = (await _first(ws, "clock"))["clock"]
        drain = await _drain(cluster, "a", "--now", "--wait", "15")
        redirect = await _first(ws, "redirect")
        assert redirect["node"] == "b"
        closing = await ws.receive()
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == CloseCode.REDIRECT  # the code the server sent
        out, err = await asyncio.wait_for(drain.communicate(), timeout=30)
        assert drain.returncode == 0, err.decode()
        assert f"moved room {room} to node b" in out.decode()
        assert "node a: 1 rooms moved, 0 still here" in out.decode()
        moved, snapshot = await _host_socket(cluster, http, redirect["url"])
        assert snapshot["type"] == "snapshot"
        assert await cluster.holder(room) == "b"
        after = snapshot["clock"]
        assert after["status"] == "running"
        expected = _expected_left(before, snapshot["server_time"])
        assert abs(after["remaining_s"] - expected) < 1.0
        # The draining node takes no new rooms: it sends them to the serving node.
        health = await http.get(f"https://127.0.0.1:{cluster.ports['a']}/healthz")
        assert (await health.json())["state"] == "draining"
        await moved.close()


async def _drain(cluster: Cluster, node: str, *flags: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "drain",
        "--node",
        node,
        *flags,
        env=_env(cluster.data_dir, cluster.ports[node], **cluster.env),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_drain_waits_for_the_next_phase_before_moving_a_running_room(
    cluster: Cluster,
) -> None:
    await cluster.start("a")
    await cluster.start("b")
    room = _room_id(cluster)
    async with cluster.client() as http:
        await _sign_in(cluster, http, "a")
        ws, _ = await _host_socket(
            cluster, http, f"https://127.0.0.1:{cluster.ports['a']}/ws/rooms/{room}?node=a"
        )
        await ws.send_json({"type": "clock", "op": "start"})
        assert (await _first(ws, "clock"))["clock"]["phases"][0]["kind"] != "break"
        drain = await _drain(cluster, "a", "--wait", str(LEASE_S + 1))
        out, err = await asyncio.wait_for(drain.communicate(), timeout=30)
        assert drain.returncode == 0, err.decode()
        assert f"node a: 0 rooms moved, 1 still here ({room})" in out.decode()
        assert await cluster.holder(room) == "a"
        await ws.send_json({"type": "clock", "op": "next"})
        moved_on = await _first(ws, "clock", "redirect")
        assert moved_on["type"] == "clock" and moved_on["clock"]["index"] == 1
        redirect = await _first(ws, "redirect")
        assert redirect["node"] == "b"
        follow, snapshot = await _host_socket(cluster, http, redirect["url"])
        assert snapshot["clock"]["index"] == 1
        assert await cluster.holder(room) == "b"
        await follow.close()


def test_multi_node_mode_refuses_to_start_on_sqlite(tmp_path: Path) -> None:
    result = _run(["serve"], _env(tmp_path, free_port(), REDIS_URL=REDIS_URL))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: REDIS_URL: multi-node mode needs PostgreSQL")


async def test_workers_start_two_nodes_answering_health_checks_and_stop_on_sigterm(
    cluster: Cluster,
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "serve",
        "--workers",
        "2",
        env=_env(cluster.data_dir, port, **cluster.env, IOP_NODE_ID="w"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    supervisor = ServerProcess(process, "", cluster.data_dir / "certs" / "ca.crt", cluster.data_dir)
    supervisor.start_reading()
    seen: dict[int, str] = {}
    try:
        async with asyncio.timeout(60):
            while not supervisor.ca_file.exists():
                assert process.returncode is None, supervisor.output.decode()
                await asyncio.sleep(0.2)
        async with cluster.client() as http:
            async with asyncio.timeout(60):
                while len(seen) < 2:
                    assert process.returncode is None, supervisor.output.decode()
                    for each in (port, port + 1):
                        try:
                            async with http.get(f"https://127.0.0.1:{each}/healthz") as response:
                                if response.status == 200:
                                    seen[each] = (await response.json())["node"]
                        except (aiohttp.ClientError, OSError):
                            pass
                    await asyncio.sleep(0.2)
        assert sorted(seen.values()) == ["w-1", "w-2"]
    finally:
        code, output = await supervisor.stop()
    assert code == 0, output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert events.count("server.stopped") == 2
    assert events[-1] == "supervisor.stopped"


async def _consent_and_check_in(cluster: Cluster, patient: dict[str, Any]) -> None:
    """The patient's consents and check-in, written straight to the shared database."""
    from server.clock import Clock
    from server.config import _database_url
    from server.phi import ensure_keyring
    from server.storage.engine import create_engine
    from tests.conftest import give_checkin, give_consents

    keyring, _ = ensure_keyring(cluster.data_dir / "secret.key")
    engine = create_engine(_database_url(cluster.env["DATABASE_URL"]))
    try:
        stand_in = type("Node", (), {"app": {CLOCK: Clock(), ENGINE: engine}, "keyring": keyring})()
        await give_consents(stand_in, patient["id"], patient["join_session_id"])  # type: ignore[arg-type]
        await give_checkin(stand_in, patient["id"], patient["join_session_id"])  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def test_a_help_press_on_one_node_reaches_a_supervisor_on_another_node(
    cluster: Cluster,
) -> None:
    await cluster.start("a")
    await cluster.start("b")
    await cluster.start("c")
    patient = cluster.demo["groups"][0]["patients"][0]
    await _consent_and_check_in(cluster, patient)
    room = _room_id(cluster)
    a, b = cluster.ports["a"], cluster.ports["b"]
    async with cluster.client() as clinician, cluster.client() as phone:
        async with cluster.client() as supervisor:
            await _sign_in(cluster, supervisor, "b", "supervisor")
            board = await _ws(supervisor, f"wss://127.0.0.1:{b}/ws/dashboard")
            await board.send_json({"type": "hello", "protocol": 1})
            await _first(board, "snapshot")
            # The room lives on node a; the patient and clinician are there.
            await _sign_in(cluster, clinician, "a")
            host, snapshot = await _host_socket(
                cluster, clinician, f"wss://127.0.0.1:{a}/ws/rooms/{room}?node=a"
            )
            assert snapshot["type"] == "snapshot" and await cluster.holder(room) == "a"
            landing = await phone.get(str(URL(patient["join_url"]).with_port(a)))
            assert landing.status == 200
            ws = await _ws(phone, f"wss://127.0.0.1:{a}/ws/rooms/{room}?node=a")
            await ws.send_json({"type": "hello", "protocol": 1})
            me = (await _first(ws, "snapshot"))["you"]["id"]
            await host.send_json({"type": "admit", "member_id": me})
            await _first(ws, "snapshot")
            pressed = asyncio.get_running_loop().time()
            await ws.send_json({"type": "help", "text": ""})
            async with asyncio.timeout(10):
                while True:
                    body = await _first(board, "event")
                    if body["kind"] == "raised":
                        break
            elapsed = asyncio.get_running_loop().time() - pressed
            assert body["event"]["session_id"] == room and body["event"]["level"] == "high"
            assert elapsed < 2.0  # pub/sub, not the outbox poll
            # Node b's dashboard also counts the people in the room node a holds.
            async with asyncio.timeout(15):
                while True:
                    sessions = await _first(board, "sessions", "snapshot")
                    listed = {s["id"]: s for s in sessions.get("sessions", [])}
                    if listed.get(room, {}).get("in_room") == 1:
                        break
            for socket in (ws, host, board):
                await socket.close()


async def test_a_dead_nodes_crisis_deadlines_fire_once_on_a_live_node(cluster: Cluster) -> None:
    from tests.integration.test_crisis import until
    from tests.integration.test_crisis_processes import FAST_POLICY, _counts

    cluster.env["IOP_TIMER_POLL_SECONDS"] = "0.1"
    a = await cluster.start("a")
    await cluster.start("b")
    patient = cluster.demo["groups"][0]["patients"][0]
    port = cluster.ports["a"]
    async with cluster.client() as http:
        for role in ("admin", "clinician"):
            await _sign_in(cluster, http, "a", role)
            if role == "admin":
                policy = {
                    "high": {
                        "escalations": [
                            {**rung, "after_s": rung["after_s"] + 2}
                            for rung in FAST_POLICY["high"]["escalations"]
                        ]
                    }
                }
                saved = await http.put(
                    f"https://127.0.0.1:{port}/api/crisis/settings/{cluster.demo['program']['id']}",
                    json={"policy": policy},
                )
                assert saved.status == 200, await saved.text()
        flagged = await http.post(
            f"https://127.0.0.1:{port}/api/crisis/events",
            json={
                "patient_id": patient["id"],
                "session_id": patient["join_session_id"],
                "level": "high",
            },
        )
        assert flagged.status == 201, await flagged.text()
    # The node that raised the event dies before its first deadline.
    a.process.send_signal(signal.SIGKILL)
    await a.process.wait()
    url = cluster.env["DATABASE_URL"]

    async def all_missed() -> bool:
        return bool((await _counts(url))["deadline_missed"] >= 3)

    await until(all_missed, within=30)
    await asyncio.sleep(1.0)
    counts = await _counts(url)
    assert counts["deadline_missed"] == 3  # each once, on the live node
    assert counts["fired"] == ["ack-high-1", "ack-high-2", "ack-high-3"]


async def test_disabling_an_account_on_one_node_closes_its_dashboard_on_another(
    cluster: Cluster,
) -> None:
    await cluster.start("a")
    await cluster.start("b")
    a, b = cluster.ports["a"], cluster.ports["b"]
    supervisor_id = next(m for m in cluster.demo["staff"] if m["role"] == "supervisor")["id"]
    async with cluster.client() as watching, cluster.client() as admin:
        await _sign_in(cluster, watching, "b", role="supervisor")
        board = await _ws(watching, f"wss://127.0.0.1:{b}/ws/dashboard")
        await board.send_json({"type": "hello", "protocol": 1})
        assert (await board.receive_json(timeout=10))["type"] == "snapshot"
        await _sign_in(cluster, admin, "a", role="admin")
        page = await (await admin.get(f"https://127.0.0.1:{a}/admin/staff")).text()
        token = CSRF.search(page)
        assert token is not None
        disabled = await admin.post(
            f"https://127.0.0.1:{a}/admin/staff/{supervisor_id}/disable",
            data={"csrf_token": token.group(1)},
            allow_redirects=False,
        )
        assert disabled.status == 303
        while (message := await board.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            pass  # updates already on their way
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert (message.data, message.extra) == (
            CloseCode.ACCOUNT_DISABLED,
            "this account has been disabled",
        )
