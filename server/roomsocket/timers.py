"""The live rooms' time-driven work (the breakout timer), checked against the app's clock.

A room keeps absolute timestamps and decides what is due when asked (`RoomHub.tick`);
this loop asks every `IOP_TIMER_POLL_SECONDS`, so tests move the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from rooms.model import RoomError
from server.appkeys import BACKGROUND, ROOMS, SETTINGS
from server.logs import get_logger

log = get_logger(__name__)


def tick_rooms(app: web.Application) -> None:
    """One pass over the live rooms."""
    for hub in app[ROOMS]:
        try:
            hub.tick()
        except RoomError as exc:
            log.warning("room.tick_refused", room_id=hub.room.id, code=exc.code)


async def _run(app: web.Application, interval: float) -> None:
    while True:
        tick_rooms(app)
        await asyncio.sleep(interval)


async def room_timers(app: web.Application) -> AsyncIterator[None]:
    """A cleanup_ctx: the room timer loop for the app's lifetime."""
    task = asyncio.create_task(_run(app, app[SETTINGS].timer_poll_s), name="room-timers")
    app[BACKGROUND].add(task)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app[BACKGROUND].discard(task)
