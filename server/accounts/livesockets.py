"""Open sockets of staff accounts, closed when the account's sessions end (on every node).

Sign-in checks refuse a disabled account or an ended session, but a room or dashboard
socket opened before would stay open for hours: disabling someone, signing out, or
resetting a password or second factor must also take away what the account sees now.
Each node keeps its staff members' open sockets by staff id; ending an account's sessions
closes its sockets here and, in multi-node mode, tells the other nodes over Redis to do
the same.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from rooms.closecodes import CloseCode
from server.accounts.opensockets import OpenSockets, cleanup_ctx, publish
from server.logs import get_logger

log = get_logger(__name__)
CHANNEL = "staff"
REASON = DISABLED = "this account has been disabled"
SIGNED_OUT = "signed out: sign in again"
RESET = "sign-in details were reset: sign in again"
# Clients do not reconnect after either code; what they show depends on the code alone
# (closeMeaning in web/static/lib/socket.js). The reason travels between nodes and into logs.
CLOSE_CODES = {
    DISABLED: CloseCode.ACCOUNT_DISABLED,
    SIGNED_OUT: CloseCode.SIGNED_OUT,
    RESET: CloseCode.SIGNED_OUT,
}
REASONS = frozenset(CLOSE_CODES)
OPEN = web.AppKey("staff_sockets", OpenSockets)


def tracked(
    app: web.Application, staff_id: str, ws: web.WebSocketResponse
) -> contextlib.AbstractContextManager[None]:
    """Keep `ws` on record as one of this staff member's open sockets while it lives."""
    return app[OPEN].tracked(staff_id, ws)


def _close_here(app: web.Application, staff_id: str, reason: str) -> int:
    """Start closing the account's sockets on this node; how many."""
    count = app[OPEN].close_here(staff_id, CLOSE_CODES[reason], reason)
    if count:
        log.info("staff.sockets_closed", staff_id=staff_id, count=count)
    return count


async def sessions_ended(app: web.Application, staff_id: str, reason: str) -> None:
    """The account's sessions ended (`reason`, one of REASONS): close its sockets everywhere."""
    _close_here(app, staff_id, reason)
    await publish(app, CHANNEL, {"staff_id": staff_id, "reason": reason})


def _parse(body: dict[str, object]) -> tuple[str, str] | None:
    staff_id, reason = body.get("staff_id"), body.get("reason")
    if "disabled" in body:  # what nodes of the previous version send
        staff_id, reason = body["disabled"], DISABLED
    if isinstance(staff_id, str) and reason in REASONS:
        return staff_id, str(reason)
    return None


def _on_message(app: web.Application, body: dict[str, object]) -> None:
    parsed = _parse(body)
    if parsed is not None:
        _close_here(app, *parsed)


def setup(app: web.Application) -> None:
    """Register after the cluster context (multi-node mode subscribes through it)."""
    app.cleanup_ctx.append(cleanup_ctx(OPEN, CHANNEL, _on_message))
