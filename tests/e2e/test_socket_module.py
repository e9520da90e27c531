"""The pages' shared socket module (web/static/lib/socket.js), imported by a real Chromium."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.e2e

IMPORT = 'await import("/static/lib/socket.js")'


async def test_backoff_doubles_to_its_cap_with_jitter_between_half_and_all(
    server: RunningServer, page: Any
) -> None:
    await page.goto(server.base_url + "/")
    delays = await page.evaluate(
        f"""async () => {{
            const {{ backoffDelay }} = {IMPORT};
            const attempts = [1, 2, 3, 4, 5, 6, 20];
            return {{
                most: attempts.map((a) => backoffDelay(a, () => 1)),
                least: attempts.map((a) => backoffDelay(a, () => 0)),
            }};
        }}"""
    )
    assert delays["most"] == [1000, 2000, 4000, 8000, 15000, 15000, 15000]
    assert delays["least"] == [500, 1000, 2000, 4000, 7500, 7500, 7500]


async def test_close_codes_mean_what_the_pages_show_for_them(
    server: RunningServer, page: Any
) -> None:
    await page.goto(server.base_url + "/")
    # One meaning per code; the reason text never changes it.
    cases = [
        (4001, "removed"),
        (4002, "ended"),
        (4003, "replaced"),
        (4307, "room moved"),
        (4402, "this account has been disabled"),
        (4401, "session revoked: sign in again"),
        (4410, "this join link is no longer active"),
        (4423, "the screen is locked: unlock it to open the room"),
        (4403, "this account has been disabled"),
        (4400, "no heartbeat"),
        (1006, ""),
        (1012, "network change"),
    ]
    meanings = await page.evaluate(
        f"""async (cases) => {{
            const {{ closeMeaning }} = {IMPORT};
            return cases.map(([code, reason]) => closeMeaning(code, reason));
        }}""",
        cases,
    )
    assert [(m["kind"], m["refused"]) for m in meanings] == [
        ("removed", False),
        ("ended", False),
        ("replaced", False),
        ("moved", False),
        ("disabled", True),
        ("signed_out", True),
        ("link_inactive", True),
        ("locked", True),
        ("refused", True),
        ("lost", False),
        ("lost", False),
        ("lost", False),
    ]


async def test_attempts_grow_while_nothing_answers_and_start_over_once_a_socket_opens(
    server: RunningServer, page: Any
) -> None:
    """Two connections fail (a path the server does not upgrade), then one opens: it says
    hello with what the page resumes from, gets a message, and is cut off; the next wait
    is the first attempt's again."""
    received: list[list[dict[str, Any]]] = []

    async def route(ws: Any) -> None:
        connection = len(received)
        received.append([])

        async def from_page(message: str | bytes) -> None:
            received[connection].append(json.loads(message))
            if connection == 0:
                ws.send(json.dumps({"type": "snapshot"}))
                await ws.close(code=1012, reason="network change")

        ws.on_message(from_page)

    await page.route_web_socket(re.compile(r"/ws/probe$"), route)
    await page.goto(server.base_url + "/")
    await page.evaluate(
        f"""async () => {{
            const {{ ReconnectingSocket, socketUrl }} = {IMPORT};
            let path = "/ws/nowhere";
            window.socketLog = [];
            const log = (entry) => window.socketLog.push(entry);
            const socket = new ReconnectingSocket({{
                url: () => socketUrl(path),
                resume: () => ({{ last_seq: 41 }}),
                onOpen: () => log("open"),
                onMessage: (message) => log("message " + message.type),
                onClose: (meaning) => {{ log("close " + meaning.kind); return "backoff"; }},
                onRetry: (attempt) => {{
                    log("retry " + attempt);
                    if (attempt === 2) path = "/ws/probe";
                }},
            }});
            socket.connect();
        }}"""
    )
    await page.wait_for_function("() => window.socketLog.length >= 9", timeout=15000)
    assert (await page.evaluate("window.socketLog"))[:9] == [
        "close lost",
        "retry 1",
        "close lost",
        "retry 2",
        "open",
        "message snapshot",
        "close lost",
        "retry 1",
        "open",
    ]
    assert received[0][0] == {"type": "hello", "protocol": 1, "last_seq": 41}
