"""Break-glass: a supervisor not on an event opens its safety panel, with a reason.

CLINICAL.md section 8: the on-call supervisor can open a patient's safety data during a
crisis with a reason, a loud audit event, and after-the-fact review. A grant is for one
event and a short window; the reason is sealed (it tends to describe the patient) and
never logged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.catalog.store import new_id
from server.phi import Keyring
from server.storage.tables import break_glass, staff

MIN_REASON = 10
MAX_REASON = 500


class ReasonInvalid(ValueError):
    """A break-glass reason that is missing, too short or too long."""


def check_reason(raw: str) -> str:
    """The reason as stored, or `ReasonInvalid` saying what is wrong."""
    reason = " ".join(raw.split())
    if len(reason) < MIN_REASON:
        raise ReasonInvalid(f"say why, in at least {MIN_REASON} characters")
    if len(reason) > MAX_REASON:
        raise ReasonInvalid(f"at most {MAX_REASON} characters")
    return reason


def _context(row_id: str) -> str:
    return f"break_glass/{row_id}"


async def grant(
    conn: AsyncConnection,
    keyring: Keyring,
    *,
    staff_id: str,
    event_id: str,
    program_id: str,
    patient_id: str,
    reason: str,
    now: dt.datetime,
    window: dt.timedelta,
) -> str:
    """Record a break-glass opening; it lasts `window` from now. Returns its id."""
    row_id = new_id()
    await conn.execute(
        break_glass.insert().values(
            id=row_id,
            staff_id=staff_id,
            event_id=event_id,
            program_id=program_id,
            patient_id=patient_id,
            reason_enc=keyring.seal(reason, context=_context(row_id)),
            at=now,
            expires_at=now + window,
        )
    )
    return row_id


async def active(
    conn: AsyncConnection, staff_id: str, event_id: str, now: dt.datetime
) -> dt.datetime | None:
    """When this staff member's open grant on the event ends, or None without one."""
    found = await conn.scalar(
        sa.select(sa.func.max(break_glass.c.expires_at)).where(
            break_glass.c.staff_id == staff_id,
            break_glass.c.event_id == event_id,
            break_glass.c.expires_at > now,
        )
    )
    if found is None:
        return None
    # SQLite hands aggregates back without the column type's conversion.
    if isinstance(found, str):
        found = dt.datetime.fromisoformat(found)
    return found if found.tzinfo is not None else found.replace(tzinfo=dt.UTC)


async def uses(
    conn: AsyncConnection,
    keyring: Keyring,
    program_ids: list[str] | None,
    since: dt.datetime,
    *,
    with_reasons: bool,
) -> list[dict[str, Any]]:
    """Break-glass openings since `since`, newest first (reasons opened for reviewers)."""
    query = (
        sa.select(break_glass, staff.c.display_name, staff.c.role)
        .join(staff, staff.c.id == break_glass.c.staff_id)
        .where(break_glass.c.at >= since)
        .order_by(break_glass.c.at.desc())
    )
    if program_ids is not None:
        query = query.where(break_glass.c.program_id.in_(program_ids))
    out = []
    for row in await conn.execute(query):
        item: dict[str, Any] = {
            "id": row.id,
            "staff_id": row.staff_id,
            "staff_name": row.display_name,
            "staff_role": row.role,
            "event_id": row.event_id,
            "program_id": row.program_id,
            "at": row.at,
            "expires_at": row.expires_at,
        }
        if with_reasons:
            item["reason"] = keyring.open(row.reason_enc, context=_context(row.id))
        out.append(item)
    return out
