"""Open room sockets by the join link that opened them, closed when the link is revoked.

A revoked link refuses the next request, but a room socket opened through it before would
stay open for the rest of the session: revoking a link (a lost phone, a link sent to the
wrong person) must also take the room away from whoever holds it now. Each node keeps
its patients' open sockets by link id; revoking a link closes its sockets here and, in
multi-node mode, tells the other nodes over Redis to do the same.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from rooms.closecodes import CloseCode
from server.accounts.opensockets import OpenSockets, cleanup_ctx, publish
from server.logs import get_logger

log = get_logger(__name__)
CHANNEL = "join_links"
# Closed with CloseCode.LINK_REVOKED: the patient's page does not reconnect and says in
# plain words that the link is no longer active (closeMeaning in web/static/lib/socket.js).
REASON = "this join link is no longer active"
OPEN = web.AppKey("link_sockets", OpenSockets)


def tracked(
    app: web.Application, link_id: str, ws: web.WebSocketResponse
) -> contextlib.AbstractContextManager[None]:
    """Keep `ws` on record as opened through `link_id` while it lives."""
    return app[OPEN].tracked(link_id, ws)


def _close_here(app: web.Application, link_id: str) -> int:
    """Start closing the link's sockets on this node; how many."""
    count = app[OPEN].close_here(link_id, CloseCode.LINK_REVOKED, REASON)
    if count:
        log.info("join_link.sockets_closed", count=count)
    return count


async def link_revoked(app: web.Application, link_id: str) -> None:
    """Close the link's open sockets on this node and ask the other nodes to."""
    _close_here(app, link_id)
    await publish(app, CHANNEL, {"revoked": link_id})


def _on_message(app: web.Application, body: dict[str, object]) -> None:
    link_id = body.get("revoked")
    if isinstance(link_id, str):
        _close_here(app, link_id)


def setup(app: web.Application) -> None:
    """Register after the cluster context (multi-node mode subscribes through it)."""
    app.cleanup_ctx.append(cleanup_ctx(OPEN, CHANNEL, _on_message))
