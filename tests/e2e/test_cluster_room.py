"""A clinician's room page follows the room when the node serving it drains."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect
from redis.asyncio import Redis

from server.cluster.nodes import DRAIN_NOW, request_drain
from tests.conftest import (
    _create_postgres_database,
    _drop_postgres_database,
    browser_sign_in,
    browser_window,
    start_server,
)
from tests.integration.test_cluster import REDIS_URL, _redis_reason

pytestmark = pytest.mark.e2e


async def test_the_room_page_moves_to_the_new_node_and_reconnects_when_a_node_drains(
    tmp_path: Path, browser: Any, postgres_unavailable: str | None
) -> None:
    reason = postgres_unavailable or await _redis_reason()
    if reason:
        pytest.skip(reason)
    name, url = await _create_postgres_database()
    prefix = f"iop-test-{secrets.token_hex(4)}:"
    redis = Redis.from_url(REDIS_URL)
    shared = {"REDIS_URL": REDIS_URL, "IOP_REDIS_PREFIX": prefix, "IOP_LEASE_SECONDS": "2"}
    database = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    nodes = []
    try:
        a = await start_server(tmp_path / "data", database, shared | {"IOP_NODE_ID": "a"})
        nodes.append(a)
        b = await start_server(tmp_path / "data", database, shared | {"IOP_NODE_ID": "b"})
        nodes.append(b)
        demo = await a.seed_demo()
        room_id = demo["groups"][0]["patients"][0]["join_session_id"]
        errors: list[str] = []
        page = await browser_window(browser, errors)
        await browser_sign_in(page, a, demo)
        await page.goto(a.base_url + f"/rooms/{room_id}")
        status = page.locator("#status")
        await expect(status).to_contain_text("Connected")

        await request_drain(redis, prefix, "a", DRAIN_NOW)
        # Each node has its own origin here, so the page itself moves to the new node.
        await expect(page).to_have_url(
            re.compile(re.escape(f"{b.base_url}/rooms/{room_id}?node=b")), timeout=15000
        )
        await expect(status).to_contain_text("Connected")
        assert await redis.get(f"{prefix}room:{room_id}") == b"b"
        assert errors == []
    finally:
        for node in nodes:
            await node.runner.cleanup()
        async for key in redis.scan_iter(match=f"{prefix}*"):
            await redis.delete(key)
        await redis.aclose()
        await _drop_postgres_database(name)
