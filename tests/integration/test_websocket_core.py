"""The socket core shared by the room and the dashboard, over a real loopback socket.

A small app runs the core the way both sockets do; a real aiohttp client looks at the
close code it gets when it is too slow, silent, or floods the server with bad frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rooms import protocol
from rooms.closecodes import CloseCode
from server import websocket
from server.websocket import OUTBOX_LIMIT, SocketParticipant, hello, read_loop


async def _flooded(request: web.Request) -> web.WebSocketResponse:
    """Queues more than the outbox holds before the writer may send any of it."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    me = SocketParticipant(ws, "test:slow")
    me.start()
    try:
        for n in range(OUTBOX_LIMIT + 10):
            me.send({"type": "n", "n": n})
        await ws.receive()
    finally:
        await me.stop()
    return ws


async def _room_like(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    me = SocketParticipant(ws, "test:room")
    try:
        said = await hello(
            ws, protocol.parse, protocol.Hello, protocol.PROTOCOL_VERSION, "protocol"
        )
        if said is None:
            return ws
        me.start()
        me.send({"type": "snapshot"})

        async def dispatch(message: Any) -> None:
            me.send({"type": "got", "what": message.type})

        await read_loop(ws, me, protocol.parse, protocol.Hello, dispatch)
    finally:
        await me.stop()
    return ws


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    app.router.add_get("/slow", _flooded)
    app.router.add_get("/room", _room_like)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    received = []
    while (message := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
        received.append(message.json())
    assert message.type is aiohttp.WSMsgType.CLOSE
    return received


async def test_a_client_that_cannot_keep_up_is_closed_as_slow(client: TestClient[Any, Any]) -> None:
    ws = await client.ws_connect("/slow")
    received = await _until_closed(ws)
    # What fitted in the outbox is flushed before the close.
    assert [m["n"] for m in received] == list(range(OUTBOX_LIMIT))
    assert (ws.close_code, (await ws.receive()).type) == (CloseCode.SLOW, aiohttp.WSMsgType.CLOSED)


async def test_a_silent_client_is_closed_for_breaking_the_protocol(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket, "IDLE_TIMEOUT_S", 0.3)
    ws = await client.ws_connect("/room")
    await ws.send_json({"type": "hello", "protocol": protocol.PROTOCOL_VERSION})
    await ws.send_json({"type": "ping", "t": 1.0})
    assert await _until_closed(ws) == [{"type": "snapshot"}, {"type": "got", "what": "ping"}]
    assert ws.close_code == CloseCode.PROTOCOL


async def test_no_hello_in_time_is_a_protocol_close(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket, "HELLO_TIMEOUT_S", 0.3)
    ws = await client.ws_connect("/room")
    assert await _until_closed(ws) == [
        {"type": "error", "code": "hello_required", "reason": "say hello first"}
    ]
    assert ws.close_code == CloseCode.PROTOCOL


async def test_bad_frames_are_answered_until_the_budget_then_closed_as_flood(
    client: TestClient[Any, Any],
) -> None:
    ws = await client.ws_connect("/room")
    await ws.send_json({"type": "hello", "protocol": protocol.PROTOCOL_VERSION})
    for _ in range(websocket.ERROR_BUDGET + 1):
        await ws.send_str("not json")
    received = await _until_closed(ws)
    assert received[0] == {"type": "snapshot"}
    assert [m["code"] for m in received[1:]] == ["bad_json"] * (websocket.ERROR_BUDGET + 1)
    assert ws.close_code == CloseCode.FLOOD
