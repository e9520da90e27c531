"""Open sockets of staff accounts, closed when an account is disabled (on every node).

Sign-in checks refuse a disabled account, but a room or dashboard socket opened before
would stay open for hours: disabling someone must also take away what they see now.
Each node keeps its staff members' open sockets by staff id; disabling an account closes
its sockets here and, in multi-node mode, tells the other nodes over Redis to do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from redis.exceptions import RedisError

from server.logs import get_logger
from server.placement import CLUSTER

log = get_logger(__name__)
CHANNEL = "staff"
# The refusal code of server/ws.py (CLOSE_REFUSED): clients do not reconnect after it, and
# show this reason (web/static/room.js, supervisor.js).
CLOSE_ACCOUNT_DISABLED = 4403
REASON = "this account has been disabled"
OPEN = web.AppKey("staff_sockets", dict[str, set[web.WebSocketResponse]])


@contextlib.contextmanager
def tracked(app: web.Application, staff_id: str, ws: web.WebSocketResponse) -> Iterator[None]:
    """Keep `ws` on record as one of this staff member's open sockets while it lives."""
    sockets = app[OPEN].setdefault(staff_id, set())
    sockets.add(ws)
    try:
        yield
    finally:
        sockets.discard(ws)
        if not sockets:
            app[OPEN].pop(staff_id, None)


CLOSING = web.AppKey("staff_sockets_closing", set[asyncio.Task[None]])


def _close_here(app: web.Application, staff_id: str) -> int:
    """Start closing the account's sockets on this node; how many.

    Not awaited: each close waits for its client's reply, which must not hold up the
    admin's request (or the relay of the next message).
    """
    sockets = list(app[OPEN].get(staff_id, ()))
    for ws in sockets:
        task = asyncio.create_task(
            ws.close(code=CLOSE_ACCOUNT_DISABLED, message=REASON.encode()),
            name="staff-socket-close",
        )
        app[CLOSING].add(task)
        task.add_done_callback(app[CLOSING].discard)
    if sockets:
        log.info("staff.sockets_closed", staff_id=staff_id, count=len(sockets))
    return len(sockets)


async def account_disabled(app: web.Application, staff_id: str) -> None:
    """Close the account's open sockets on this node and ask the other nodes to."""
    _close_here(app, staff_id)
    cluster = app.get(CLUSTER)
    if cluster is None:
        return
    try:
        await cluster.publish(CHANNEL, {"disabled": staff_id, "origin": cluster.node_id})
    except (RedisError, OSError) as exc:
        # Their next request is refused anyway; only already-open sockets stay until then.
        log.warning("staff.disable_publish_failed", error_type=type(exc).__name__)


async def _listen(app: web.Application) -> None:
    cluster = app[CLUSTER]
    while True:
        try:
            async for body in cluster.subscribe(CHANNEL):
                staff_id = body.get("disabled")
                if isinstance(staff_id, str) and body.get("origin") != cluster.node_id:
                    _close_here(app, staff_id)
        except (RedisError, OSError) as exc:
            log.warning("staff.subscribe_failed", error_type=type(exc).__name__)
            await asyncio.sleep(1.0)


async def _ctx(app: web.Application) -> AsyncIterator[None]:
    app[OPEN] = {}
    app[CLOSING] = set()
    task = asyncio.create_task(_listen(app), name="staff-sockets") if CLUSTER in app else None
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
