"""Durable crisis deadlines: stored with their due time, so a restart re-arms them.

Several servers poll the same table; a deadline fires once, and never after the event it
waits on was acknowledged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis import routing
from crisis.ledger import Event
from server.catalog.store import new_id
from server.storage.tables import crisis_timers


async def arm(
    conn: AsyncConnection, event: Event, policy: routing.Policy, start: dt.datetime
) -> None:
    """Store the event's deadlines for its level, counted from `start`."""
    rows = [
        {
            "id": new_id(),
            "event_id": event.id,
            "purpose": deadline.purpose,
            "waiting_on": ",".join(deadline.waiting_on),
            "page": ",".join(deadline.page),
            "due_at": deadline.due_at,
            "attempts": 0,
        }
        for deadline in routing.deadlines(policy, event.level, start)
    ]
    if rows:
        await conn.execute(crisis_timers.insert(), rows)


async def cancel_pending(conn: AsyncConnection, event_id: str, now: dt.datetime) -> int:
    """Cancel the event's pending deadlines that an acknowledgement answers; return how many."""
    # A timer that another process is firing right now is locked; skip it rather than
    # wait (its firing re-reads the event under the event's lock and stands down).
    pending = (
        sa.select(crisis_timers.c.id, crisis_timers.c.purpose)
        .where(
            crisis_timers.c.event_id == event_id,
            crisis_timers.c.fired_at.is_(None),
            crisis_timers.c.cancelled_at.is_(None),
        )
        .with_for_update(skip_locked=True)
    )
    ids = [row.id for row in await conn.execute(pending) if routing.cancelled_by_ack(row.purpose)]
    if not ids:
        return 0
    result = await conn.execute(
        crisis_timers.update()
        .where(crisis_timers.c.id.in_(ids), crisis_timers.c.fired_at.is_(None))
        .values(cancelled_at=now)
    )
    return int(result.rowcount)


async def due_timer(conn: AsyncConnection, now: dt.datetime) -> Any:
    """The most overdue unfired timer nobody else holds, locked (PostgreSQL), or None."""
    query = (
        sa.select(crisis_timers)
        .where(
            crisis_timers.c.fired_at.is_(None),
            crisis_timers.c.cancelled_at.is_(None),
            crisis_timers.c.due_at <= now,
        )
        .order_by(crisis_timers.c.due_at, crisis_timers.c.id)
        .limit(1)
        # Several servers poll the same table: each skips the rows another is firing.
        .with_for_update(skip_locked=True)
    )
    return (await conn.execute(query)).first()


async def claim(conn: AsyncConnection, timer: Any, now: dt.datetime, worker: str) -> bool:
    """Mark a due timer fired by `worker`; False when someone else fired or cancelled it."""
    claimed = await conn.execute(
        crisis_timers.update()
        .where(
            crisis_timers.c.id == timer.id,
            crisis_timers.c.fired_at.is_(None),
            crisis_timers.c.cancelled_at.is_(None),
        )
        .values(fired_at=now, claimed_by=worker, attempts=crisis_timers.c.attempts + 1)
    )
    # On SQLite (no row locks) this guarded update is the claim: a second writer finds
    # fired_at already set and changes nothing.
    return claimed.rowcount == 1


async def stand_down(conn: AsyncConnection, timer_id: str, now: dt.datetime) -> None:
    """Cancel a fired timer whose event was acknowledged while it was being claimed."""
    await conn.execute(
        crisis_timers.update().where(crisis_timers.c.id == timer_id).values(cancelled_at=now)
    )


async def next_deadlines(conn: AsyncConnection, event_ids: list[str]) -> dict[str, Any]:
    """The earliest pending deadline of each event: {event_id: (purpose, due_at)}."""
    if not event_ids:
        return {}
    found = await conn.execute(
        sa.select(crisis_timers.c.event_id, crisis_timers.c.purpose, crisis_timers.c.due_at)
        .where(
            crisis_timers.c.event_id.in_(event_ids),
            crisis_timers.c.fired_at.is_(None),
            crisis_timers.c.cancelled_at.is_(None),
        )
        .order_by(crisis_timers.c.due_at)
    )
    out: dict[str, Any] = {}
    for row in found:
        out.setdefault(row.event_id, (row.purpose, row.due_at))
    return out
