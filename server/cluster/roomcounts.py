"""Room lists across nodes: a dashboard on any node counts people in every live room.

Each node writes its live rooms' counts (ids and numbers only) to Redis under its own
expiring key every second, and a dashboard reads the other nodes' keys; a node that died
stops being counted when its key expires with its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from server.appkeys import ROOMS
from server.dashboard import views as dashboard_views
from server.logs import get_logger
from server.roomsocket.placement import CLUSTER

log = get_logger(__name__)


async def live_counts(app: web.Application) -> dict[str, dict[str, Any]]:
    """Counts of every live room in the cluster (this node's alone in single-node mode)."""
    local = dashboard_views.live_counts(app[ROOMS])
    cluster = app.get(CLUSTER)
    if cluster is None:
        return local
    counts = dict(local)
    try:
        for node_id, theirs in (await cluster.shared("counts")).items():
            if node_id != cluster.node_id:
                for room_id, view in theirs.items():
                    counts.setdefault(room_id, view)
    except (RedisError, OSError, ValueError) as exc:
        log.warning("cluster.counts_failed", error_type=type(exc).__name__)
    return counts


SHARE_INTERVAL_S = 1.0


async def _share_loop(app: web.Application) -> None:
    cluster = app[CLUSTER]
    while True:
        try:
            await cluster.share("counts", dashboard_views.live_counts(app[ROOMS]))
        except (RedisError, OSError) as exc:
            log.warning("cluster.counts_failed", error_type=type(exc).__name__)
        await asyncio.sleep(SHARE_INTERVAL_S)


async def _views_ctx(app: web.Application) -> AsyncIterator[None]:
    if CLUSTER not in app:
        yield
        return
    task = asyncio.create_task(_share_loop(app), name="cluster-counts")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def setup(app: web.Application) -> None:
    """Share this node's room counts while it is in a cluster."""
    app.cleanup_ctx.append(_views_ctx)
