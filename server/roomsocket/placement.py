"""Which node serves a room: redirects to the holder, drains, and moves after a lost lease.

Single-node mode (no REDIS_URL) has no cluster and every room is served here.
In multi-node mode a page or socket for a room this node does not hold is sent to the
node that does, with the node's id in a `node` query parameter: behind one public name
the reverse proxy routes on it (cookies are per host, so nodes share one name).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError
from yarl import URL

from rooms.closecodes import CloseCode
from rooms.hub import RoomHub
from server.appkeys import ROOMS, SETTINGS
from server.cluster.nodes import DRAIN_NOW, Cluster, ClusterBusy, NodeInfo
from server.logs import get_logger
from server.roomsocket import media
from server.roomsocket.journal import ROOM_JOURNAL

log = get_logger(__name__)
CLUSTER = web.AppKey("cluster", Cluster)
MOVES = web.AppKey("moves", set[asyncio.Task[None]])
PHASE_OPS = frozenset({"start", "next", "previous", "jump"})


class Unavailable(Exception):
    """The room cannot be placed right now (Redis away, or a dead holder's lease running)."""


def cluster_of(app: web.Application) -> Cluster | None:
    """This node's cluster membership, or None in single-node mode."""
    return app.get(CLUSTER)


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """Join the cluster on start-up (multi-node mode only); free every lease on shutdown."""
    settings = app[SETTINGS]
    if settings.redis_url is None:
        yield
        return
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    cluster = Cluster(settings, redis)
    grace = 3 * settings.lease_s

    def keep(room_id: str, claimed: float) -> bool:
        # A page claims the room before its socket connects; give the socket time to come.
        return app[ROOMS].get(room_id) is not None or time.monotonic() - claimed < grace

    cluster.keep = keep
    cluster.on_drain = lambda mode: _drain_step(app, mode)
    cluster.on_lost = lambda room_id: _spawn(app, room_id, _move(app, room_id, release=False))
    moves: set[asyncio.Task[None]] = set()
    app[MOVES] = moves
    await cluster.start()
    app[CLUSTER] = cluster
    try:
        yield
    finally:
        for task in list(app[MOVES]):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await cluster.close()
        await redis.aclose()


async def elsewhere(app: web.Application, room_id: str, hint: str | None = None) -> NodeInfo | None:
    """The other node that serves this room, or None when this node does (taking it).

    `hint` is the request's `node` parameter. Naming another node yet arriving here means
    the reverse proxy could not reach that node and fell back to a backup (the node was
    killed and its heartbeat has not gone stale yet): sending the client back there would
    only bring it here again, in a loop, so its lease is waited out as a dead node's is.
    """
    cluster = cluster_of(app)
    if cluster is None:
        return None
    if cluster.holds(room_id) and app[ROOMS].get(room_id) is not None:
        return None
    unreachable = hint if hint != cluster.node_id else None
    try:
        placed = await cluster.claim(
            room_id, unreachable=unreachable, placed=hint == cluster.node_id
        )
        return placed.node
    except ClusterBusy:
        raise Unavailable("the room's previous node stopped; try again in a moment") from None
    except (RedisError, OSError) as exc:
        log.warning("cluster.unreachable", error_type=type(exc).__name__)
        raise Unavailable("the room service is unavailable; try again in a moment") from None


def node_url(node: NodeInfo, path: str, query: dict[str, str] | None = None) -> str:
    """`path` on `node`, with the node hint the reverse proxy routes on."""
    return str(URL(node.url).with_path(path).with_query({**(query or {}), "node": node.id}))


def redirect_message(node: NodeInfo, room_id: str, member_kind: str) -> dict[str, Any]:
    """What a socket is told before it is closed with CloseCode.REDIRECT."""
    ws = URL(node_url(node, f"/ws/rooms/{room_id}"))
    pages = {"staff": f"/rooms/{room_id}", "support": "/family/room"}
    page = node_url(node, pages.get(member_kind, "/room"))
    return {
        "type": "redirect",
        "url": str(ws.with_scheme("wss" if ws.scheme == "https" else "ws")),
        "page": page,
        "node": node.id,
    }


async def redirect_page(request: web.Request, room_id: str) -> None:
    """Send a room page request to the node that holds the room (HTTP 307)."""
    try:
        node = await elsewhere(request.app, room_id, request.query.get("node"))
    except Unavailable as exc:
        raise web.HTTPServiceUnavailable(reason=str(exc), headers={"Retry-After": "1"}) from None
    if node is not None:
        query = {k: v for k, v in request.query.items() if k != "node"}
        raise web.HTTPTemporaryRedirect(node_url(node, request.path, query))


def ws_path(app: web.Application, room_id: str) -> str:
    """The room socket's path as the page should open it (with this node's hint)."""
    cluster = cluster_of(app)
    path = f"/ws/rooms/{room_id}"
    return path if cluster is None else f"{path}?node={cluster.node_id}"


async def room_closed(app: web.Application, room_id: str) -> None:
    """An ended room left this node: free its lease at once."""
    cluster = cluster_of(app)
    if cluster is not None:
        with contextlib.suppress(RedisError, OSError):
            await cluster.release(room_id)


def phase_changed(app: web.Application, room_id: str, op: str) -> None:
    """Between two phases is where a draining node hands a room over."""
    cluster = cluster_of(app)
    if cluster is not None and cluster.draining and op in PHASE_OPS:
        _spawn(app, room_id, _move(app, room_id, release=True))


def at_safe_point(hub: RoomHub) -> bool:
    """A moment when moving the room interrupts nobody's phase."""
    clock = hub.clock
    if hub.connected == 0 or clock is None or clock.status in ("not_started", "ended"):
        return True
    return clock.status == "running" and clock.phase.kind == "break"


def _drain_step(app: web.Application, mode: str) -> None:
    # A room claimed by a page whose socket has not come yet has nobody to interrupt.
    for room_id in app[CLUSTER].held_rooms():
        if app[ROOMS].get(room_id) is None:
            _spawn(app, room_id, _move(app, room_id, release=True))
    for hub in app[ROOMS]:
        if mode == DRAIN_NOW or at_safe_point(hub):
            _spawn(app, hub.room.id, _move(app, hub.room.id, release=True))


def _spawn(app: web.Application, room_id: str, work: Coroutine[Any, Any, None]) -> None:
    name = f"room-move-{room_id}"
    if any(task.get_name() == name for task in app[MOVES]):
        work.close()
        return
    task = asyncio.create_task(work, name=name)
    app[MOVES].add(task)
    task.add_done_callback(app[MOVES].discard)


async def _move(app: web.Application, room_id: str, *, release: bool) -> None:
    """Hand a room over: store its state, free its lease, send its clients to a new node."""
    cluster = app[CLUSTER]
    try:
        async with cluster.moving(room_id):
            target = await cluster.pick_other() if release else None
            if release and target is None:
                log.warning("cluster.drain_stalled", room_id=room_id, reason="no other node")
                return
            hub = app[ROOMS].get(room_id)
            connections = []
            if hub is not None:
                app[ROOMS].drop(room_id)
                connections = hub.close()
            # The next node rebuilds the clock from the database: write it out first.
            await app[ROOM_JOURNAL].flush()
            if release:
                await cluster.release(room_id)
            for connection in connections:
                if target is not None:
                    kind = connection.member_id.split(":", 1)[0]
                    connection.send(redirect_message(target, room_id, kind))
            await asyncio.gather(
                *(c.close(CloseCode.REDIRECT, "the room moved") for c in connections),
                return_exceptions=True,
            )
            await media.close_room(app, room_id)
            to = target.id if target is not None else None
            log.info("cluster.room_moved", room_id=room_id, to_node=to, count=len(connections))
            with contextlib.suppress(RedisError, OSError):
                await cluster.publish(
                    "rooms", {"event": "moved", "room": room_id, "from": cluster.node_id, "to": to}
                )
    except (RedisError, OSError) as exc:
        log.warning("cluster.move_failed", room_id=room_id, error_type=type(exc).__name__)
