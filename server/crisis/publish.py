"""Telling this process's dashboards about a crisis change as soon as its transaction commits.

Every notification is also written to the outbox in the same transaction (the webhook and
other processes get it from there, at least once). Waiting for the outbox poll would put
up to a poll interval between a patient's help press and the supervisor's screen, so the
process that made the change publishes to its own `EventStream` right after the commit.
The stream drops ids it has already published, so the outbox's later copy is not shown
twice. Dashboards on other processes still hear it through the outbox poll; carrying it
across processes directly (Redis pub/sub on `REDIS_URL`) is a later step.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crisis.notify import EventStream, Notification
from server.appkeys import CRISIS_STREAM, ENGINE, SETTINGS

# The notifications queued by the transaction running in this task, if one is collecting.
_pending: ContextVar[list[dict[str, Any]] | None] = ContextVar("crisis_pending", default=None)


def queued(body: dict[str, Any]) -> None:
    """Remember a notification the current transaction queued (outbox.enqueue)."""
    pending = _pending.get()
    if pending is not None:
        pending.append(body)


def notification(body: dict[str, Any], public_url: str) -> Notification:
    """An outbox body as the notification listeners get."""
    return Notification(
        id=body["id"],
        event_id=body["event_id"],
        program_id=body["program_id"],
        level=body["level"],
        kind=body["kind"],
        roles=tuple(body["roles"]),
        at=dt.datetime.fromisoformat(body["at"]),
        url=f"{public_url}/crisis/events/{body['event_id']}",
    )


@contextlib.asynccontextmanager
async def committed(
    engine: AsyncEngine, stream: EventStream, public_url: str
) -> AsyncIterator[AsyncConnection]:
    """A transaction whose crisis notifications are published once it has committed."""
    pending: list[dict[str, Any]] = []
    token = _pending.set(pending)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        _pending.reset(token)
    # Reached only when the commit succeeded: a rolled-back change is never announced.
    for body in pending:
        stream.publish(notification(body, public_url))


def transaction(app: web.Application) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
    """`committed` with the application's engine, stream and public URL."""
    return committed(app[ENGINE], app[CRISIS_STREAM], app[SETTINGS].public_url)
