"""Open room sockets by the join link that opened them, closed when the link is revoked.

A revoked link refuses the next request, but a room socket opened through it before would
stay open for the rest of the session: revoking a link (a lost phone, a link sent to the
wrong person) must also take the room away from whoever holds it now. Each node keeps
its patients' open sockets by link id; revoking a link closes its sockets here and, in
multi-node mode, tells the other nodes over Redis to do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from redis.exceptions import RedisError

from rooms.closecodes import CloseCode
from server.logs import get_logger
from server.roomsocket.placement import CLUSTER

log = get_logger(__name__)
CHANNEL = "join_links"
# Closed with CloseCode.LINK_REVOKED: the patient's page does not reconnect and says in
# plain words that the link is no longer active (web/static/room.js).
REASON = "this join link is no longer active"
OPEN = web.AppKey("link_sockets", dict[str, set[web.WebSocketResponse]])
CLOSING = web.AppKey("link_sockets_closing", set[asyncio.Task[None]])


@contextlib.contextmanager
def tracked(app: web.Application, link_id: str, ws: web.WebSocketResponse) -> Iterator[None]:
    """Keep `ws` on record as opened through `link_id` while it lives."""
    sockets = app[OPEN].setdefault(link_id, set())
    sockets.add(ws)
    try:
        yield
    finally:
        sockets.discard(ws)
        if not sockets:
            app[OPEN].pop(link_id, None)


def _close_here(app: web.Application, link_id: str) -> int:
    """Start closing the link's sockets on this node (not awaited: each close waits for
    its client's reply, which must not hold up the revoking request); how many."""
    sockets = list(app[OPEN].get(link_id, ()))
    for ws in sockets:
        task = asyncio.create_task(
            ws.close(code=CloseCode.LINK_REVOKED, message=REASON.encode()), name="link-socket-close"
        )
        app[CLOSING].add(task)
        task.add_done_callback(app[CLOSING].discard)
    if sockets:
        log.info("join_link.sockets_closed", count=len(sockets))
    return len(sockets)


async def link_revoked(app: web.Application, link_id: str) -> None:
    """Close the link's open sockets on this node and ask the other nodes to."""
    _close_here(app, link_id)
    cluster = app.get(CLUSTER)
    if cluster is None:
        return
    try:
        await cluster.publish(CHANNEL, {"revoked": link_id, "origin": cluster.node_id})
    except (RedisError, OSError) as exc:
        # The link refuses every new request anyway; only an open socket stays until then.
        log.warning("join_link.revoke_publish_failed", error_type=type(exc).__name__)


async def _listen(app: web.Application) -> None:
    cluster = app[CLUSTER]
    while True:
        try:
            async for body in cluster.subscribe(CHANNEL):
                link_id = body.get("revoked")
                if isinstance(link_id, str) and body.get("origin") != cluster.node_id:
                    _close_here(app, link_id)
        except (RedisError, OSError) as exc:
            log.warning("join_link.subscribe_failed", error_type=type(exc).__name__)
            await asyncio.sleep(1.0)


async def _ctx(app: web.Application) -> AsyncIterator[None]:
    app[OPEN] = {}
    app[CLOSING] = set()
    task = asyncio.create_task(_listen(app), name="link-sockets") if CLUSTER in app else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*app[CLOSING], return_exceptions=True)


def setup(app: web.Application) -> None:
    """Register after the cluster context (multi-node mode subscribes through it)."""
    app.cleanup_ctx.append(_ctx)
