"""The notification outbox: one row per thing to tell, delivered after the transaction commits."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.ledger import Event
from server.catalog.store import new_id
from server.crisis import publish as crisis_publish
from server.storage.tables import notification_outbox


async def enqueue(
    conn: AsyncConnection, event: Event, kind: str, roles: tuple[str, ...], now: dt.datetime
) -> str:
    """Queue one notification about `event` for delivery (ids, level, roles: no PHI)."""
    notification_id = new_id()
    body = {
        "id": notification_id,
        "event_id": event.id,
        "program_id": event.program_id,
        "level": event.level,
        "kind": kind,
        "roles": list(roles),
        "at": now.astimezone(dt.UTC).isoformat(),
    }
    crisis_publish.queued(body)
    await conn.execute(
        notification_outbox.insert().values(
            id=notification_id,
            event_id=event.id,
            program_id=event.program_id,
            kind=kind,
            body=body,
            status="pending",
            created_at=now,
            next_attempt_at=now,
            attempts=0,
        )
    )
    return notification_id
