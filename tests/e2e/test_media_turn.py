"""A browser that may only use a TURN relay still gets media through the SFU (coturn)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    RunningServer,
    admit_waiting,
    browser_sign_in,
    browser_window,
    consent_group,
    free_port,
    start_server,
)
from tests.e2e.test_media import decoding

pytestmark = pytest.mark.e2e
SECRET = "loopback-test-turn-secret-0123456789"


@pytest.fixture
async def turn_port() -> AsyncIterator[int]:
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        pytest.fail("turnserver is missing: run `make test`, which installs Debian's coturn")
    port = free_port()
    low = free_port()
    process = await asyncio.create_subprocess_exec(
        turnserver,
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        "--allow-loopback-peers",  # coturn refuses loopback peers by default
        "--use-auth-secret",
        f"--static-auth-secret={SECRET}",
        "--realm=iop.test",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--fingerprint",
        f"--min-port={low}",
        f"--max-port={low + 200}",
        "--log-file=stdout",
        "--simple-log",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)
        assert process.returncode is None, "turnserver did not start"
        yield port
    finally:
        process.terminate()
        await process.wait()


@pytest.fixture
async def relay_server(
    tmp_path: Path, sqlite_url: str, turn_port: int
) -> AsyncIterator[RunningServer]:
    secret = tmp_path / "turn.secret"
    secret.write_text(SECRET)
    running = await start_server(
        tmp_path / "data",
        sqlite_url,
        {
            "IOP_TURN_URLS": f"turn:127.0.0.1:{turn_port}?transport=udp",
            "IOP_TURN_SECRET_FILE": str(secret),
            "IOP_ICE_FORCE_RELAY": "true",
        },
    )
    try:
        yield running
    finally:
        await running.runner.cleanup()


async def test_relay_only_browsers_get_media_through_turn(
    relay_server: RunningServer, browser: Any
) -> None:
    demo = await relay_server.seed_demo()
    await consent_group(relay_server, demo)
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    page = await browser_window(browser, errors, phone=True)
    await page.goto(patient["join_url"])
    await page.get_by_role("link", name="Go to the waiting room").click()
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, relay_server, demo)
    await clinician.goto(relay_server.base_url + f"/rooms/{patient['join_session_id']}")
    await admit_waiting(clinician, 1)
    for window in (page, clinician):
        stats = await decoding(window, 1)
        paths = [s["candidateType"] for s in stats if s["kind"] == "path"]
        assert paths and all(p == "relay" for p in paths), stats
    assert errors == []
