"""Handouts in storage: versions are appended, never changed; attachments come and go."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from care.handouts import Shelved, check_content, check_title, next_version, split_pages
from server.catalog.store import new_id
from server.storage.tables import handout_attachments, handout_versions, handouts, sessions

_LISTED = (
    handout_versions.c.version,
    handout_versions.c.format,
    handout_versions.c.size,
    handout_versions.c.sha256,
    handout_versions.c.pages,
    handout_versions.c.created_at,
    handout_versions.c.created_by,
)


def _pages(fmt: str, data: bytes) -> int:
    # A PDF is opened by the browser's own viewer, one document: one "page" to show.
    return len(split_pages(data.decode("utf-8"))) if fmt == "markdown" else 1


async def create_handout(
    conn: AsyncConnection,
    program_id: str,
    title: str,
    fmt: str,
    data: bytes,
    by: str,
    now: dt.datetime,
) -> str:
    """A new handout with its first version; its id."""
    title = check_title(title)
    data = check_content(fmt, data)
    handout_id = new_id()
    await conn.execute(
        handouts.insert().values(
            id=handout_id, program_id=program_id, title=title, created_at=now, created_by=by
        )
    )
    await _insert_version(conn, handout_id, 1, fmt, data, by, now)
    return handout_id


async def _insert_version(
    conn: AsyncConnection,
    handout_id: str,
    version: int,
    fmt: str,
    data: bytes,
    by: str,
    now: dt.datetime,
) -> None:
    await conn.execute(
        handout_versions.insert().values(
            id=new_id(),
            handout_id=handout_id,
            version=version,
            format=fmt,
            content=data,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            pages=_pages(fmt, data),
            created_at=now,
            created_by=by,
        )
    )


async def add_version(
    conn: AsyncConnection, handout_id: str, fmt: str, data: bytes, by: str, now: dt.datetime
) -> int:
    """Store the next version of a handout; its number. Earlier versions stay."""
    data = check_content(fmt, data)
    known = (
        await conn.execute(
            sa.select(handout_versions.c.version).where(handout_versions.c.handout_id == handout_id)
        )
    ).scalars()
    version = next_version(known)
    await _insert_version(conn, handout_id, version, fmt, data, by, now)
    return version


async def get_handout(conn: AsyncConnection, handout_id: str) -> Any:
    """A handout's row (id, program_id, title), or None."""
    return (await conn.execute(sa.select(handouts).where(handouts.c.id == handout_id))).first()


async def library(conn: AsyncConnection, program_id: str) -> list[dict[str, Any]]:
    """A program's handouts by title, each with its latest version's facts."""
    latest = (
        sa.select(
            handout_versions.c.handout_id,
            sa.func.max(handout_versions.c.version).label("latest"),
        )
        .group_by(handout_versions.c.handout_id)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(handouts, latest.c.latest, handout_versions.c.format, handout_versions.c.pages)
        .join(latest, latest.c.handout_id == handouts.c.id)
        .join(
            handout_versions,
            sa.and_(
                handout_versions.c.handout_id == handouts.c.id,
                handout_versions.c.version == latest.c.latest,
            ),
        )
        .where(handouts.c.program_id == program_id)
        .order_by(handouts.c.title, handouts.c.id)
    )
    return [dict(row._mapping) for row in rows]


async def versions(conn: AsyncConnection, handout_id: str) -> list[dict[str, Any]]:
    """Every version of a handout, newest first (without the content)."""
    rows = await conn.execute(
        sa.select(*_LISTED)
        .where(handout_versions.c.handout_id == handout_id)
        .order_by(handout_versions.c.version.desc())
    )
    return [dict(row._mapping) for row in rows]


async def version_content(conn: AsyncConnection, handout_id: str, version: int) -> Any:
    """One version with its bytes, or None."""
    return (
        await conn.execute(
            sa.select(handout_versions).where(
                handout_versions.c.handout_id == handout_id,
                handout_versions.c.version == version,
            )
        )
    ).first()


async def attach(
    conn: AsyncConnection,
    *,
    program_id: str,
    handout_id: str,
    version: int | None,
    template: str | None,
    session_id: str | None,
    phase: str | None,
    by: str,
    now: dt.datetime,
) -> str:
    """Offer a handout during a template's phase, or during one session (or its phase)."""
    attachment_id = new_id()
    await conn.execute(
        handout_attachments.insert().values(
            id=attachment_id,
            program_id=program_id,
            handout_id=handout_id,
            version=version,
            template=template,
            session_id=session_id,
            phase=phase,
            created_at=now,
            created_by=by,
        )
    )
    return attachment_id


async def detach(conn: AsyncConnection, handout_id: str, attachment_id: str) -> bool:
    """Remove one attachment of this handout; False if there was none."""
    done = await conn.execute(
        handout_attachments.delete().where(
            handout_attachments.c.id == attachment_id,
            handout_attachments.c.handout_id == handout_id,
        )
    )
    return bool(done.rowcount)


async def attachments_of(conn: AsyncConnection, handout_id: str) -> list[dict[str, Any]]:
    """Where a handout is attached, with each session's start time."""
    rows = await conn.execute(
        sa.select(handout_attachments, sessions.c.starts_at)
        .outerjoin(sessions, sessions.c.id == handout_attachments.c.session_id)
        .where(handout_attachments.c.handout_id == handout_id)
        .order_by(handout_attachments.c.created_at)
    )
    return [dict(row._mapping) for row in rows]


async def shelf_for_session(conn: AsyncConnection, session_id: str) -> list[Shelved]:
    """Every handout a session offers: its template's phases' and its own, resolved to a
    version (a pinned one, or the latest now)."""
    session = (
        await conn.execute(
            sa.select(sessions.c.program_id, sessions.c.template).where(sessions.c.id == session_id)
        )
    ).first()
    if session is None:
        return []
    latest = (
        sa.select(
            handout_versions.c.handout_id,
            sa.func.max(handout_versions.c.version).label("latest"),
        )
        .group_by(handout_versions.c.handout_id)
        .subquery()
    )
    wanted = sa.func.coalesce(handout_attachments.c.version, latest.c.latest)
    rows = await conn.execute(
        sa.select(
            handout_attachments.c.handout_id,
            handout_attachments.c.phase,
            handouts.c.title,
            handout_versions.c.version,
            handout_versions.c.format,
            handout_versions.c.pages,
        )
        .join(handouts, handouts.c.id == handout_attachments.c.handout_id)
        .join(latest, latest.c.handout_id == handout_attachments.c.handout_id)
        .join(
            handout_versions,
            sa.and_(
                handout_versions.c.handout_id == handout_attachments.c.handout_id,
                handout_versions.c.version == wanted,
            ),
        )
        .where(
            handout_attachments.c.program_id == session.program_id,
            handouts.c.program_id == session.program_id,
            sa.or_(
                handout_attachments.c.session_id == session_id,
                handout_attachments.c.template == session.template,
            ),
        )
        .order_by(handouts.c.title, handout_attachments.c.created_at)
    )
    shelf: list[Shelved] = []
    for row in rows:
        item = Shelved(row.handout_id, row.version, row.title, row.format, row.pages, row.phase)
        if item not in shelf:
            shelf.append(item)
    return shelf
