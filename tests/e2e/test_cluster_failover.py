"""Three nodes behind one nginx name: the node holding a live room is killed, the room
comes back on another node and the browsers see each other again without anyone acting."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect
from yarl import URL

from tests.conftest import ROOT, admit_waiting, browser_sign_in, browser_window, free_port
from tests.e2e.test_media import decoding
from tests.integration.test_cluster import (
    Cluster,
    _consent_and_check_in,
    _room_id,
    running_cluster,
)

SHIPPED = ROOT / "deploy" / "nginx-iop.conf"
# What the shipped file is written for (README, "Two nodes and a proxy on one machine").
SHIPPED_NODES = {"node-1": 9001, "node-2": 9002}
SHIPPED_TLS = ("8443", "/etc/nginx/server.crt", "/etc/nginx/server.key")
LEASE_S = 4
# Lease expiry, the browsers' reconnect back-off and a fresh media connection, on two
# busy cores shared with other browser tests.
FAILOVER_MS = (6 * LEASE_S + 30) * 1000


def nginx_site(nodes: dict[str, int], listen: str, cert: str, key: str) -> str:
    """deploy/nginx-iop.conf for `nodes` (id -> port on 127.0.0.1).

    Only the routing lines depend on the nodes; they are written in the shipped file's own
    form (one upstream per node with every other node as its backup), and everything else
    is the shipped file as it is, so for the shipped two nodes this returns that file.
    """
    shipped = SHIPPED.read_text()
    width = max(len(_upstream(node)) for node in nodes)
    any_node = "".join(f" server 127.0.0.1:{port};" for port in nodes.values())
    routing = [f"upstream {'iop_any'.ljust(width)} {{{any_node} }}"]
    for node, port in nodes.items():
        backups = "".join(
            f" server 127.0.0.1:{other} backup;" for n, other in nodes.items() if n != node
        )
        routing.append(
            f"upstream {_upstream(node).ljust(width)} {{ server 127.0.0.1:{port};{backups} }}"
        )
    hints = "".join(f" {node} {_upstream(node)};" for node in nodes)
    routing.append(f"map $arg_node $iop_upstream {{ default iop_any;{hints} }}")
    lines = shipped.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("upstream iop_any"))
    last = next(i for i, line in enumerate(lines) if line.startswith("map $arg_node"))
    site = "".join(lines[:first]) + "\n".join(routing) + "\n" + "".join(lines[last + 1 :])
    shipped_listen, shipped_cert, shipped_key = SHIPPED_TLS
    for old, new in (
        (f"listen {shipped_listen} ssl;", f"listen {listen} ssl;"),
        (f"ssl_certificate     {shipped_cert};", f"ssl_certificate     {cert};"),
        (f"ssl_certificate_key {shipped_key};", f"ssl_certificate_key {key};"),
    ):
        assert old in site, f"{SHIPPED} no longer has {old!r}"
        site = site.replace(old, new)
    return site


def _upstream(node: str) -> str:
    return "iop_" + re.sub(r"[^a-z0-9]", "_", node.lower())


def test_the_failover_test_runs_the_shipped_nginx_config_and_the_readme_shows_it() -> None:
    shipped = SHIPPED.read_text()
    assert nginx_site(SHIPPED_NODES, *SHIPPED_TLS) == shipped
    body = "".join(line for line in shipped.splitlines(keepends=True) if not line.startswith("#"))
    assert f"```nginx\n{body}```" in (ROOT / "README.md").read_text()


@dataclass
class Nginx:
    """nginx from Debian in a directory of its own, listening on one loopback port."""

    process: asyncio.subprocess.Process
    base_url: str
    error_log: Path

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)  # fast shutdown: sockets are long-lived
        await asyncio.wait_for(self.process.wait(), timeout=30)


def _nginx_prefix(prefix: Path, port: int, nodes: dict[str, int], certs: Path) -> Path:
    """Write nginx.conf (pid, logs, temp files under `prefix`) including the site."""
    prefix.mkdir(parents=True)
    site = nginx_site(
        nodes, f"127.0.0.1:{port}", str(certs / "server.crt"), str(certs / "server.key")
    )
    (prefix / "iop.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root nginx would run its workers as nobody, who cannot enter pytest's private
    # temporary directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} notice;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n"
        f"    include {prefix / 'iop.conf'};\n}}\n"
    )
    return prefix / "nginx.conf"


def _nginx_binary() -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.fail("nginx is missing: run `make test`, which installs Debian's nginx")
    return binary


async def start_nginx(prefix: Path, port: int, nodes: dict[str, int], certs: Path) -> Nginx:
    """Run the shipped site in the foreground, unprivileged-style, on 127.0.0.1:`port`."""
    binary = _nginx_binary()
    config = _nginx_prefix(prefix, port, nodes, certs)
    process = await asyncio.create_subprocess_exec(
        binary,
        "-p",
        str(prefix),
        "-c",
        str(config),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    proxy = Nginx(process, f"https://127.0.0.1:{port}", prefix / "error.log")
    tls = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as http:
        for _ in range(100):
            if process.returncode is not None:
                break
            try:
                async with http.get(proxy.base_url + "/healthz") as response:
                    if response.status == 200:
                        return proxy
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)
    await proxy.stop()
    raise AssertionError(f"nginx did not start:\n{proxy.error_log.read_text()}")


@pytest.fixture
async def behind_nginx(
    tmp_path: Path, postgres_unavailable: str | None
) -> AsyncIterator[tuple[Cluster, Nginx]]:
    """Three nodes with one public name, nginx in front routing on the node hint."""
    port = free_port()
    async with running_cluster(tmp_path, postgres_unavailable) as cluster:
        cluster.env["IOP_LEASE_SECONDS"] = str(LEASE_S)
        cluster.env["IOP_PUBLIC_URL"] = f"https://127.0.0.1:{port}"
        for node in ("node-1", "node-2", "node-3"):
            await cluster.start(node)
        certs = cluster.data_dir / "certs"
        proxy = await start_nginx(tmp_path / "nginx", port, cluster.ports, certs)
        try:
            yield cluster, proxy
        finally:
            await proxy.stop()


async def _stored_for_takeover(cluster: Cluster, room_id: str, member_id: str) -> None:
    """Wait until what the next node rebuilds the room from is in PostgreSQL: the patient
    admitted, the session clock running."""
    import asyncpg

    conn = await asyncpg.connect(cluster.env["DATABASE_URL"])
    try:
        async with asyncio.timeout(20):
            while True:
                raw = await conn.fetchval("SELECT room_state FROM sessions WHERE id = $1", room_id)
                clock = await conn.fetchval(
                    "SELECT state FROM session_clocks WHERE session_id = $1", room_id
                )
                members = (json.loads(raw) if raw else {}).get("members", [])
                admitted = any(
                    f"{m['kind']}:{m['id']}" == member_id and m["presence"] == "admitted"
                    for m in members
                )
                if admitted and clock and json.loads(clock)["status"] == "running":
                    return
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _holder_becomes_one_of(cluster: Cluster, room_id: str, live: set[str]) -> str:
    async with asyncio.timeout(FAILOVER_MS / 1000):
        while True:
            holder = await cluster.holder(room_id)
            if holder in live:
                assert holder is not None
                return holder
            await asyncio.sleep(0.2)


async def _frames(page: Any) -> int:
    stats = await page.evaluate("window.IOPMedia.stats()")
    return sum(s["framesDecoded"] for s in stats if s["kind"] == "video")


async def decoding_again(page: Any, within: float) -> None:
    """Wait until video frames decode on the page's current media connection again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = await _frames(page)
    rising = 0
    while rising < 3:  # three samples in a row: frames are arriving, not a leftover count
        if loop.time() > deadline:
            stats = await page.evaluate("window.IOPMedia.stats()")
            raise AssertionError(f"no new video frames: {stats}")
        await asyncio.sleep(0.5)
        now = await _frames(page)
        rising = rising + 1 if now > last else 0
        last = now


FIRST_PHASE = "Arrival, tech and privacy check, location, screeners"
# When the current phase ends by this page's clock (ms since the epoch).
PHASE_ENDS = "() => Date.now() + window.IOPSession.remainingMs()"
# What a page shows from now on: every status line, and whether the patient's waiting room
# ever appeared (it must not: she was admitted before the node died).
WATCH = """() => {
  const status = document.getElementById("status");
  const waiting = document.getElementById("waiting-view");
  window.seen = { statuses: [], waitingRoom: false };
  new MutationObserver(() => window.seen.statuses.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
  if (waiting) {
    new MutationObserver(() => { if (!waiting.hidden) window.seen.waitingRoom = true; })
      .observe(waiting, { attributes: true });
  }
}"""
RECONNECTING = "Connection lost. Reconnecting…"


@pytest.mark.e2e
async def test_a_killed_nodes_live_room_resumes_elsewhere_behind_one_name_with_video(
    behind_nginx: tuple[Cluster, Nginx], browser: Any
) -> None:
    cluster, proxy = behind_nginx
    patient = cluster.demo["groups"][0]["patients"][0]
    await _consent_and_check_in(cluster, patient)
    room_id = _room_id(cluster)
    member_id = f"patient:{patient['id']}"
    errors: list[str] = []
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, proxy.base_url, cluster.demo)
    await clinician.goto(proxy.base_url + f"/rooms/{room_id}")
    await expect(clinician.locator("#status")).to_contain_text("Connected", timeout=20000)
    phone = await browser_window(browser, errors, phone=True)
    await phone.goto(str(URL(patient["join_url"]).with_port(URL(proxy.base_url).port)))
    await phone.get_by_role("link", name="Go to the waiting room").click()
    await admit_waiting(clinician, 1)
    await expect(phone.locator("#room-view")).to_be_visible(timeout=20000)
    await decoding(phone, 1)
    await decoding(clinician, 1)
    await clinician.get_by_role("button", name="Start the session clock").click()
    await expect(phone.locator("#phase-title")).to_have_text(FIRST_PHASE)
    # Both pages came in through the one name; the room lives on one of the nodes.
    assert URL(phone.url).with_query(None) == URL(proxy.base_url + "/room")
    holder = await cluster.holder(room_id)
    assert holder in cluster.nodes
    await _stored_for_takeover(cluster, room_id, member_id)
    phase_ends = await phone.evaluate(PHASE_ENDS)
    for page in (phone, clinician):
        await page.evaluate(WATCH)
    sockets: list[str] = []
    phone.on("websocket", lambda ws: sockets.append(ws.url))

    dead = cluster.nodes[holder].process
    dead.send_signal(signal.SIGKILL)
    await dead.wait()
    live = set(cluster.nodes) - {holder}
    new_holder = await _holder_becomes_one_of(cluster, room_id, live)

    # "Connected" again comes from the new node's snapshot: the room is back.
    for page in (phone, clinician):
        await expect(page.locator("#status")).to_contain_text("Connected", timeout=FAILOVER_MS)
        seen = await page.evaluate("window.seen")
        statuses = seen["statuses"]
        assert RECONNECTING in statuses, seen  # shown while the room was away
        assert statuses.index(RECONNECTING) < len(statuses) - 1, seen
        assert seen["waitingRoom"] is False
    await expect(phone.locator("#room-view")).to_be_visible()
    await expect(phone.locator("#waiting-view")).to_be_hidden()
    # Nobody had to let her in again: the clinician sees her in the room, none waiting.
    await expect(clinician.locator("#waiting > li")).to_have_count(0)
    in_room = clinician.locator(f'#people li[data-member="{member_id}"]')
    await expect(in_room).to_be_visible()
    await expect(in_room).not_to_contain_text("reconnecting")
    await decoding_again(phone, within=FAILOVER_MS / 1000)
    await decoding_again(clinician, within=FAILOVER_MS / 1000)
    assert await cluster.holder(room_id) == new_holder
    # The session clock went on through the outage: the phase ends when it did before.
    await expect(phone.locator("#phase-title")).to_have_text(FIRST_PHASE)
    await expect(phone.locator("#clock-status")).to_have_text("")  # running, not paused
    assert abs(await phone.evaluate(PHASE_ENDS) - phase_ends) < 2000
    # The browser waited for the room instead of bouncing between the nodes.
    assert 1 <= len(sockets) <= 6, sockets
    assert errors == []
