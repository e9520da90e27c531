"""Which pages may open a WebSocket here: the public URL's origin, and the cluster's nodes.

Both sockets (the room's and the dashboard's) are authenticated by cookies, and a browser
attaches cookies to an upgrade that any site's page starts: without this check another
site could open a staff member's dashboard or a patient's room in the background
(cross-site WebSocket hijacking). Browsers always send `Origin` on an upgrade; a request
without one did not come from one of our pages and is refused as well, since every client
of ours (the browser client, the test and benchmark clients) says where it comes from.
"""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError
from yarl import URL

from server.appkeys import SETTINGS
from server.logs import get_logger
from server.roomsocket.placement import cluster_of

log = get_logger(__name__)


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, as a browser writes `Origin`."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        return None
    return str(parsed.origin()).lower()


async def allowed_origins(app: web.Application) -> set[str]:
    """The origins whose pages may open sockets here (asks Redis in multi-node mode)."""
    settings = app[SETTINGS]
    allowed = {origin_of(settings.public_url), origin_of(settings.node_url)}
    cluster = cluster_of(app)
    if cluster is not None:
        try:
            allowed |= {origin_of(node.url) for node in await cluster.nodes()}
        except (RedisError, OSError) as exc:
            # Without the node list only this node's own and the public origin pass.
            log.warning("ws.origin_nodes_unavailable", error_type=type(exc).__name__)
    return {origin for origin in allowed if origin is not None}


async def check(request: web.Request) -> None:
    """Refuse a WebSocket upgrade started by any page but ours (HTTP 403, no socket)."""
    sent = request.headers.get("Origin")
    origin = origin_of(sent) if sent is not None else None
    if origin is None:
        raise web.HTTPForbidden(reason="a WebSocket must say which page opened it (Origin)")
    settings = request.app[SETTINGS]
    if origin in (origin_of(settings.public_url), origin_of(settings.node_url)):
        return
    if origin not in await allowed_origins(request.app):
        log.warning("ws.origin_refused")
        raise web.HTTPForbidden(reason="this page may not open a WebSocket here")
