"""Patient join links: opaque, hashed, expiring, revocable, one device at a time."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.accounts.store import new_token, token_hash
from server.catalog.store import CatalogError, new_id
from server.storage.tables import (
    appointments,
    family_sessions,
    group_members,
    groups,
    join_links,
    patients,
    programs,
    sessions,
)

MAX_DOB_FAILURES = 5


@dataclass(frozen=True, slots=True)
class IssuedLink:
    """A new link: the token is shown once and never stored."""

    id: str
    token: str
    expires_at: dt.datetime
    session_id: str | None


@dataclass(frozen=True, slots=True)
class SessionSlot:
    """What a patient is checked in for."""

    session_id: str
    title: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    state: str


def _title(group_name: str | None, family_session_id: str | None) -> str:
    if group_name:
        return group_name
    return "Family session" if family_session_id is not None else "One-on-one session"


def link_state(row: Any, now: dt.datetime) -> str:
    """ "active", "revoked" or "expired"."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    return "active"


async def patient_sessions(
    conn: AsyncConnection, patient_id: str, after: dt.datetime
) -> list[SessionSlot]:
    """The patient's group sessions and appointments that have not ended, soonest first."""
    group_rows = await conn.execute(
        sa.select(sessions, groups.c.name.label("title"))
        .join(groups, groups.c.id == sessions.c.group_id)
        .join(group_members, group_members.c.group_id == groups.c.id)
        .where(
            group_members.c.patient_id == patient_id,
            group_members.c.left_on.is_(None),
            sessions.c.ends_at > after,
            sessions.c.state != "cancelled",
        )
    )
    one_on_one = await conn.execute(
        sa.select(sessions, family_sessions.c.session_id.label("family_session_id"))
        .join(appointments, appointments.c.id == sessions.c.appointment_id)
        .outerjoin(family_sessions, family_sessions.c.session_id == sessions.c.id)
        .where(
            appointments.c.patient_id == patient_id,
            sessions.c.ends_at > after,
            sessions.c.state != "cancelled",
        )
    )
    found = [SessionSlot(r.id, r.title, r.starts_at, r.ends_at, r.state) for r in group_rows] + [
        SessionSlot(r.id, _title(None, r.family_session_id), r.starts_at, r.ends_at, r.state)
        for r in one_on_one
    ]
    return sorted(found, key=lambda slot: slot.starts_at)


async def session_slot(conn: AsyncConnection, session_id: str) -> SessionSlot | None:
    """One session as a patient sees it."""
    row = (
        await conn.execute(
            sa.select(
                sessions,
                groups.c.name.label("title"),
                family_sessions.c.session_id.label("family_session_id"),
            )
            .outerjoin(groups, groups.c.id == sessions.c.group_id)
            .outerjoin(family_sessions, family_sessions.c.session_id == sessions.c.id)
            .where(sessions.c.id == session_id)
        )
    ).first()
    if row is None:
        return None
    title = _title(row.title, row.family_session_id)
    return SessionSlot(row.id, title, row.starts_at, row.ends_at, row.state)


async def issue(
    conn: AsyncConnection,
    *,
    patient_id: str,
    session_id: str | None,
    issued_by: str,
    now: dt.datetime,
    grace: dt.timedelta,
    standing_for: dt.timedelta,
) -> IssuedLink:
    """Issue a link for one session (expiring at its end plus `grace`) or a standing one."""
    if session_id is not None:
        slots = {s.session_id: s for s in await patient_sessions(conn, patient_id, now)}
        slot = slots.get(session_id)
        if slot is None:
            raise CatalogError("session_id", "not an upcoming session of this patient")
        expires_at = slot.ends_at + grace
    else:
        expires_at = now + standing_for
    token = new_token()
    link_id = new_id()
    await conn.execute(
        join_links.insert().values(
            id=link_id,
            patient_id=patient_id,
            session_id=session_id,
            token_hash=token_hash(token),
            issued_by=issued_by,
            expires_at=expires_at,
            created_at=now,
        )
    )
    return IssuedLink(link_id, token, expires_at, session_id)


async def find(conn: AsyncConnection, token: str) -> Any:
    """The link a token opens, with its patient's program settings, or None."""
    return (
        await conn.execute(
            sa.select(
                join_links,
                patients.c.program_id,
                patients.c.date_of_birth_enc,
                programs.c.phone.label("program_phone"),
                programs.c.name.label("program_name"),
                programs.c.join_requires_dob,
            )
            .join(patients, patients.c.id == join_links.c.patient_id)
            .join(programs, programs.c.id == patients.c.program_id)
            .where(join_links.c.token_hash == token_hash(token))
        )
    ).first()


async def get(conn: AsyncConnection, link_id: str) -> Any:
    """A link by id, with its program's phone, or None."""
    return (
        await conn.execute(
            sa.select(
                join_links,
                programs.c.phone.label("program_phone"),
                programs.c.name.label("program_name"),
                patients.c.time_zone.label("patient_time_zone"),
            )
            .join(patients, patients.c.id == join_links.c.patient_id)
            .join(programs, programs.c.id == patients.c.program_id)
            .where(join_links.c.id == link_id)
        )
    ).first()


def _open(link_id: str, now: dt.datetime) -> sa.ColumnElement[bool]:
    """The link exists, is not revoked and has not expired."""
    return sa.and_(
        join_links.c.id == link_id,
        join_links.c.revoked_at.is_(None),
        join_links.c.expires_at > now,
    )


async def bind_device(
    conn: AsyncConnection, link_id: str, now: dt.datetime
) -> tuple[str, bool] | None:
    """Make a new device the link's only device; say whether another one was moved off.

    None when the link closed since it was read (revoked, for instance by a fifth wrong
    date of birth answered at the same moment): the update only touches an open link, and
    holds its row until the transaction ends.
    """
    previous = await conn.scalar(
        sa.select(join_links.c.device_id).where(join_links.c.id == link_id)
    )
    device_id = secrets.token_hex(16)
    bound = await conn.execute(
        join_links.update().where(_open(link_id, now)).values(device_id=device_id, last_used_at=now)
    )
    if bound.rowcount != 1:
        return None
    return device_id, previous is not None


async def record_dob_failure(conn: AsyncConnection, link_id: str, now: dt.datetime) -> str:
    """Count a wrong date of birth; "failed", "revoked" (at the limit) or "closed".

    The count is one conditional update, so answers arriving together queue on the link's
    row (PostgreSQL's row lock, SQLite's single writer) and each sees the ones before it:
    the fifth revokes the link, and any later one finds it closed ("closed", not counted).
    """
    counted = await conn.execute(
        join_links.update()
        .where(_open(link_id, now), join_links.c.dob_failures < MAX_DOB_FAILURES)
        .values(dob_failures=join_links.c.dob_failures + 1)
    )
    if counted.rowcount != 1:
        return "closed"
    failures = await conn.scalar(
        sa.select(join_links.c.dob_failures).where(join_links.c.id == link_id)
    )
    if (failures or 0) < MAX_DOB_FAILURES:
        return "failed"
    await conn.execute(join_links.update().where(_open(link_id, now)).values(revoked_at=now))
    return "revoked"


async def revoke(conn: AsyncConnection, link_id: str, by: str, now: dt.datetime) -> Any:
    """Revoke a link; return its row (None when there is no such link)."""
    row = (await conn.execute(sa.select(join_links).where(join_links.c.id == link_id))).first()
    if row is None:
        return None
    if row.revoked_at is None:
        await conn.execute(
            join_links.update()
            .where(join_links.c.id == link_id)
            .values(revoked_at=now, revoked_by=by)
        )
    return row


async def links_of_patient(conn: AsyncConnection, patient_id: str) -> list[Any]:
    """Every link issued to a patient, newest first."""
    return list(
        (
            await conn.execute(
                sa.select(join_links)
                .where(join_links.c.patient_id == patient_id)
                .order_by(join_links.c.created_at.desc())
            )
        ).all()
    )
