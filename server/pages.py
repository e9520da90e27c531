"""HTML pages and health endpoints."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from rooms.media import fanout
from server.accounts.auth import current_staff
from server.appkeys import ENGINE
from server.logs import get_logger
from server.render import render
from server.roomsocket import placement
from server.storage.engine import ping

log = get_logger(__name__)


async def home(request: web.Request) -> web.Response:
    """The landing page: who this is for and where each kind of user goes."""
    who = await current_staff(request)
    return await render(request, "home.html", {"staff": who})


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving (in multi-node mode: as which node), and which
    fan-out its SFU sends with."""
    cluster = placement.cluster_of(request.app)
    active = fanout.current()[0]
    if cluster is None:
        return web.json_response({"status": "ok", "fanout": active})
    state = "draining" if cluster.draining else "serving"
    return web.json_response(
        {"status": "ok", "node": cluster.node_id, "state": state, "fanout": active}
    )


async def readyz(request: web.Request) -> web.Response:
    """The process can reach its database."""
    try:
        await ping(request.app[ENGINE])
    except (SQLAlchemyError, OSError) as exc:
        log.warning("readyz.database_unreachable", error_type=type(exc).__name__)
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ready", "database": "ok"})


def add_routes(app: web.Application) -> None:
    """Register pages and health checks."""
    app.router.add_get("/", home, name="home")
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
