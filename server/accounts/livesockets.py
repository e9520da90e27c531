"""Open sockets of staff accounts, closed when the account's sessions end (on every node).

Sign-in checks refuse a disabled account or an ended session, but a room or dashboard
socket opened before would stay open for hours: disabling someone, signing out, or
resetting a password or second factor must also take away what the account sees now.
Each node keeps its staff members' open sockets by staff id; ending an account's sessions
closes its sockets here and, in multi-node mode, tells the other nodes over Redis to do
the same.
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
CHANNEL = "staff"
REASON = DISABLED = "this account has been disabled"
SIGNED_OUT = "signed out: sign in again"
RESET = "sign-in details were reset: sign in again"
# Clients do not reconnect after either code; what they show depends on the code alone
# (web/static/room.js, supervisor.js). The reason travels between nodes and into logs.
CLOSE_CODES = {
    DISABLED: CloseCode.ACCOUNT_DISABLED,
    SIGNED_OUT: CloseCode.SIGNED_OUT,
    RESET: CloseCode.SIGNED_OUT,
}
REASONS = frozenset(CLOSE_CODES)
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


def _close_here(app: web.Application, staff_id: str, reason: str) -> int:
    """Start closing the account's sockets on this node; how many.

    Not awaited: each close waits for its client's reply, which must not hold up the
    admin's request (or the relay of the next message).
    """
    sockets = list(app[OPEN].get(staff_id, ()))
    for ws in sockets:
        task = asyncio.create_task(
            ws.close(code=CLOSE_CODES[reason], message=reason.encode()),
            name="staff-socket-close",
        )
        app[CLOSING].add(task)
        task.add_done_callback(app[CLOSING].discard)
    if sockets:
        log.info("staff.sockets_closed", staff_id=staff_id, count=len(sockets))
    return len(sockets)


async def sessions_ended(app: web.Application, staff_id: str, reason: str) -> None:
    """The account's sessions ended (`reason`, one of REASONS): close its sockets everywhere."""
    _close_here(app, staff_id, reason)
    cluster = app.get(CLUSTER)
    if cluster is None:
        return
    try:
        await cluster.publish(
            CHANNEL, {"staff_id": staff_id, "reason": reason, "origin": cluster.node_id}
        )
    except (RedisError, OSError) as exc:
        # Their next request is refused anyway; only already-open sockets stay until then.
        log.warning("staff.sessions_publish_failed", error_type=type(exc).__name__)


def _parse(body: dict[str, object]) -> tuple[str, str] | None:
    staff_id, reason = body.get("staff_id"), body.get("reason")
    if "disabled" in body:  # what nodes of the previous version send
        staff_id, reason = body["disabled"], DISABLED
    if isinstance(staff_id, str) and reason in REASONS:
        return staff_id, str(reason)
    return None


async def _listen(app: web.Application) -> None:
    cluster = app[CLUSTER]
    while True:
        try:
            async for body in cluster.subscribe(CHANNEL):
                parsed = _parse(body)
                if parsed is not None and body.get("origin") != cluster.node_id:
                    _close_here(app, *parsed)
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
