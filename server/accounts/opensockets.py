"""One node's open sockets filed by a key (a staff id, a join link id), closed on every node.

Taking access away (disabling an account, signing out, revoking a join link) must also
close the sockets opened before it. Each node files its own open sockets by key; closing a
key closes them here and, in multi-node mode, publishes the key on a Redis channel so the
other nodes close theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from server.logs import get_logger
from server.roomsocket.placement import CLUSTER

log = get_logger(__name__)


class OpenSockets:
    """This node's open sockets by key, and the closes it has started but not seen end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._open: dict[str, set[web.WebSocketResponse]] = {}
        self._closing: set[asyncio.Task[bool]] = set()

    @contextlib.contextmanager
    def tracked(self, key: str, ws: web.WebSocketResponse) -> Iterator[None]:
        """Keep `ws` on file under `key` while it lives."""
        sockets = self._open.setdefault(key, set())
        sockets.add(ws)
        try:
            yield
        finally:
            sockets.discard(ws)
            if not sockets:
                self._open.pop(key, None)

    def close_here(self, key: str, code: int, reason: str) -> int:
        """Start closing the key's sockets on this node; how many.

        Not awaited: each close waits for its client's reply, which must not hold up the
        request that took access away (or the relay of the next message).
        """
        sockets = list(self._open.get(key, ()))
        for ws in sockets:
            task = asyncio.create_task(
                ws.close(code=code, message=reason.encode()), name=f"{self.name}-socket-close"
            )
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return len(sockets)

    async def wait_closed(self) -> None:
        """Wait for every close started here."""
        await asyncio.gather(*self._closing, return_exceptions=True)


async def publish(app: web.Application, channel: str, body: dict[str, Any]) -> None:
    """Tell the other nodes (multi-node mode only); a Redis failure is logged, not raised."""
    cluster = app.get(CLUSTER)
    if cluster is None:
        return
    try:
        await cluster.publish(channel, {**body, "origin": cluster.node_id})
    except (RedisError, OSError) as exc:
        # Access is refused on the next request anyway; only open sockets stay until then.
        log.warning("sockets.publish_failed", channel=channel, error_type=type(exc).__name__)


async def _listen(
    app: web.Application,
    channel: str,
    on_message: Callable[[web.Application, dict[str, object]], None],
) -> None:
    cluster = app[CLUSTER]
    while True:
        try:
            async for body in cluster.subscribe(channel):
                if body.get("origin") != cluster.node_id:
                    on_message(app, body)
        except (RedisError, OSError) as exc:
            log.warning("sockets.subscribe_failed", channel=channel, error_type=type(exc).__name__)
            await asyncio.sleep(1.0)


def cleanup_ctx(
    key: web.AppKey[OpenSockets],
    channel: str,
    on_message: Callable[[web.Application, dict[str, object]], None],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that files sockets under `key` and, in multi-node mode, hands
    the other nodes' messages on `channel` to `on_message`."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[key] = sockets = OpenSockets(channel)
        task = (
            asyncio.create_task(_listen(app, channel, on_message), name=f"{channel}-sockets")
            if CLUSTER in app
            else None
        )
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sockets.wait_closed()

    return ctx
