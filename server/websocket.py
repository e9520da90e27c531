"""What the room and dashboard sockets share: the outbox, the hello, the read loop.

Each connection runs one read loop (here, `read_loop`) and one write loop (the
`SocketParticipant`'s writer draining a bounded outbox), as Galène's web client does.
Every way a socket ends maps to one `CloseCode` (rooms/closecodes.py); a protocol error
answers with an `error` message and keeps the connection until the client's invalid
messages pass a budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from aiohttp import WSMsgType, web

from rooms.closecodes import CloseCode
from rooms.protocol import ProtocolError

__all__ = ["SocketParticipant", "hello", "read_loop", "refuse"]

OUTBOX_LIMIT = 256
HELLO_TIMEOUT_S = 10.0
# Clients ping every 10 s; a connection silent for three of those is gone.
IDLE_TIMEOUT_S = 35.0
ERROR_BUDGET = 20  # invalid messages tolerated per window before the connection is closed
ERROR_WINDOW_S = 10.0


class SocketParticipant:
    """A WebSocket as a room or dashboard sees it: a bounded outbox drained by one writer."""

    def __init__(self, ws: web.WebSocketResponse, member_id: str) -> None:
        self.member_id = member_id
        self._ws = ws
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin draining the outbox."""
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.member_id}")

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a message; a client too slow to take it is closed and will resync."""
        try:
            self._outbox.put_nowait(json.dumps(message, separators=(",", ":")))
        except asyncio.QueueFull:
            if self._closer is None:
                self._closer = asyncio.create_task(
                    self.close(CloseCode.SLOW, "too slow to keep up")
                )
            return False
        return True

    async def _write_loop(self) -> None:
        while True:
            frame = await self._outbox.get()
            try:
                await self._ws.send_str(frame)
            except (ConnectionResetError, RuntimeError):
                return
            finally:
                self._outbox.task_done()

    async def close(self, code: int, reason: str) -> None:
        """Flush what is queued, then close with a code the client understands."""
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), timeout=2.0)
        await self._ws.close(code=code, message=reason.encode())

    async def stop(self) -> None:
        """Stop the writer (and a pending close) and wait for them."""
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def refuse(ws: web.WebSocketResponse, code: str, reason: str, close: CloseCode) -> None:
    """Say why in an `error` message, then close (before any outbox exists)."""
    await ws.send_json({"type": "error", "code": code, "reason": reason})
    await ws.close(code=close, message=reason.encode())


class Versioned(Protocol):
    """A parsed `hello`: it names the protocol version the client speaks."""

    @property
    def protocol(self) -> int: ...


H = TypeVar("H", bound=Versioned)


async def hello(
    ws: web.WebSocketResponse,
    parse: Callable[[str | bytes], object],
    hello_type: type[H],
    version: int,
    speaks: str,
) -> H | None:
    """Wait for the client's `hello` in `version`; refuse anything else (None)."""
    try:
        first = await ws.receive(timeout=HELLO_TIMEOUT_S)
    except TimeoutError:
        await refuse(ws, "hello_required", "say hello first", CloseCode.PROTOCOL)
        return None
    if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    try:
        message = parse(first.data)
    except ProtocolError as exc:
        await refuse(ws, exc.code, exc.reason, CloseCode.PROTOCOL)
        return None
    if not isinstance(message, hello_type):
        await refuse(ws, "hello_required", "the first message must be hello", CloseCode.PROTOCOL)
        return None
    if message.protocol != version:
        reason = f"this server speaks {speaks} {version}"
        await refuse(ws, "protocol_version", reason, CloseCode.PROTOCOL)
        return None
    return message


async def read_loop(
    ws: web.WebSocketResponse,
    me: SocketParticipant,
    parse: Callable[[str | bytes], object],
    hello_type: type[object],
    dispatch: Callable[[Any], Awaitable[None]],
    *,
    error_fields: Mapping[str, Any] | None = None,
) -> None:
    """Parse each frame and hand it to `dispatch` until the socket closes.

    A frame that does not parse (or `dispatch` raising `ProtocolError`) is answered with
    an `error` (plus `error_fields`); past the budget the socket closes with FLOOD, and
    silence past the heartbeat deadline closes it with PROTOCOL.
    """
    errors: list[float] = []
    while not ws.closed:
        try:
            frame = await ws.receive(timeout=IDLE_TIMEOUT_S)
        except TimeoutError:
            await me.close(CloseCode.PROTOCOL, "no heartbeat")
            return
        if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        try:
            message = parse(frame.data)
            if isinstance(message, hello_type):
                raise ProtocolError("unexpected", "hello was already said")
            await dispatch(message)
        except ProtocolError as exc:
            me.send(
                {"type": "error", "code": exc.code, "reason": exc.reason, **(error_fields or {})}
            )
            now = time.monotonic()
            errors = [t for t in errors if now - t < ERROR_WINDOW_S] + [now]
            if len(errors) > ERROR_BUDGET:
                await me.close(CloseCode.FLOOD, "too many invalid messages")
                return
