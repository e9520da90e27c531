"""Session templates and session clocks in storage."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.clock import SessionClock
from rooms.structure import SHIPPED, Template, phases_from_json
from server.storage.tables import session_clocks, session_templates, sessions


async def ensure_shipped(conn: AsyncConnection, now: dt.datetime) -> int:
    """Install the shipped templates that are not in the database yet."""
    names = set((await conn.execute(sa.select(session_templates.c.name))).scalars())
    added = 0
    for template in SHIPPED:
        if template.name in names:
            continue
        await conn.execute(
            session_templates.insert().values(
                name=template.name,
                title=template.title,
                phases=[phase.to_json() for phase in template.phases],
                updated_at=now,
            )
        )
        added += 1
    return added


def _template(row: Any) -> Template:
    return Template(row.name, row.title, phases_from_json(row.phases))


async def templates(conn: AsyncConnection) -> list[Template]:
    """Every template, by name."""
    rows = await conn.execute(sa.select(session_templates).order_by(session_templates.c.name))
    return [_template(row) for row in rows]


async def template(conn: AsyncConnection, name: str) -> Template | None:
    """One template, or None."""
    row = (
        await conn.execute(sa.select(session_templates).where(session_templates.c.name == name))
    ).first()
    return None if row is None else _template(row)


async def save_template(
    conn: AsyncConnection, template: Template, by: str, now: dt.datetime
) -> None:
    """Create or replace a template (sessions already running keep their own plan)."""
    values = {
        "title": template.title,
        "phases": [phase.to_json() for phase in template.phases],
        "updated_at": now,
        "updated_by": by,
    }
    updated = await conn.execute(
        session_templates.update().where(session_templates.c.name == template.name).values(values)
    )
    if updated.rowcount == 0:
        await conn.execute(session_templates.insert().values(name=template.name, **values))


async def load_clock(conn: AsyncConnection, session_id: str) -> SessionClock | None:
    """The session's clock: as stored, or fresh from its template; None if it has none."""
    row = (
        await conn.execute(
            sa.select(session_clocks.c.state).where(session_clocks.c.session_id == session_id)
        )
    ).first()
    if row is not None:
        return SessionClock.from_json(row.state)
    name = await conn.scalar(sa.select(sessions.c.template).where(sessions.c.id == session_id))
    found = await template(conn, name) if name else None
    return None if found is None else SessionClock(list(found.phases))


async def save_clock(
    conn: AsyncConnection, session_id: str, state: dict[str, Any], now: dt.datetime
) -> None:
    """Store a clock's state (one row per session)."""
    updated = await conn.execute(
        session_clocks.update()
        .where(session_clocks.c.session_id == session_id)
        .values(state=state, updated_at=now)
    )
    if updated.rowcount == 0:
        await conn.execute(
            session_clocks.insert().values(session_id=session_id, state=state, updated_at=now)
        )
