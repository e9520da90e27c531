"""Crisis notifications between nodes: every dashboard sees every escalation.

Each process publishes a crisis change to its own `EventStream` as soon as it commits
(server/crisis/publish.py). In multi-node mode this module joins those streams through
Redis pub/sub: what a node publishes locally goes out on the `crisis` channel, and what
arrives from other nodes goes into the local stream, so a supervisor whose dashboard is
on node B sees a help press in a room on node A as fast as on one node. The outbox
(written in the same transaction) remains the durable path: a node that misses a
pub/sub message still gets the notification when the outbox delivers it, and the
stream drops ids it has already shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from crisis.notify import Notification, StreamClosedError
from server.appkeys import CRISIS_STREAM
from server.logs import get_logger
from server.roomsocket.placement import CLUSTER

log = get_logger(__name__)
CHANNEL = "crisis"
RECENT = 4096


def to_wire(notification: Notification, origin: str) -> dict[str, Any]:
    """A notification as it travels between nodes (ids, level, kind, link: no PHI)."""
    return {
        "origin": origin,
        "id": notification.id,
        "event_id": notification.event_id,
        "program_id": notification.program_id,
        "level": notification.level,
        "kind": notification.kind,
        "roles": list(notification.roles),
        "at": notification.at.isoformat(),
        "url": notification.url,
    }


def from_wire(body: dict[str, Any]) -> Notification:
    """The notification another node sent."""
    return Notification(
        id=str(body["id"]),
        event_id=str(body["event_id"]),
        program_id=str(body["program_id"]),
        level=str(body["level"]),
        kind=str(body["kind"]),
        roles=tuple(str(r) for r in body["roles"]),
        at=dt.datetime.fromisoformat(str(body["at"])),
        url=str(body["url"]),
    )


class CrisisBus:
    """Relays this node's crisis notifications out, and other nodes' in."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._cluster = app[CLUSTER]
        self._received: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Begin relaying both ways."""
        self._tasks = [
            asyncio.create_task(self._outbound(), name="crisis-bus-out"),
            asyncio.create_task(self._inbound(), name="crisis-bus-in"),
        ]

    async def close(self) -> None:
        """Stop relaying and wait for both directions to finish."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _outbound(self) -> None:
        stream = self._app[CRISIS_STREAM]
        node = self._cluster.node_id
        while True:
            try:
                subscription = stream.subscribe()
            except StreamClosedError:
                return
            try:
                async for notification in subscription:
                    if notification.id in self._received:
                        continue  # it came from another node: it is not ours to send on
                    try:
                        await self._cluster.publish(CHANNEL, to_wire(notification, node))
                    except (RedisError, OSError) as exc:
                        # The outbox still delivers it; other nodes' dashboards see it later.
                        log.warning("crisis.bus_publish_failed", error_type=type(exc).__name__)
            finally:
                subscription.close()
            # The subscription ended (this relay fell behind): subscribe again.

    async def _inbound(self) -> None:
        stream = self._app[CRISIS_STREAM]
        node = self._cluster.node_id
        while True:
            try:
                async for body in self._cluster.subscribe(CHANNEL):
                    if body.get("origin") == node:
                        continue
                    try:
                        notification = from_wire(body)
                    except (KeyError, TypeError, ValueError):
                        log.warning("crisis.bus_bad_message")
                        continue
                    self._received[notification.id] = None
                    if len(self._received) > RECENT:
                        self._received.popitem(last=False)
                    stream.publish(notification)
            except (RedisError, OSError) as exc:
                log.warning("crisis.bus_subscribe_failed", error_type=type(exc).__name__)
                await asyncio.sleep(1.0)


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    if CLUSTER not in app:
        yield  # one node: the local stream is the whole story
        return
    bus = CrisisBus(app)
    bus.start()
    try:
        yield
    finally:
        await bus.close()


def setup(app: web.Application) -> None:
    """Relay crisis notifications between nodes (after the cluster has been joined)."""
    app.cleanup_ctx.append(_bus_ctx)
