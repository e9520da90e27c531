"""The on-call roster and each program's crisis settings (escalation policy, webhook)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.routing import ONCALL_ROLES, Policy, policy_from_json, policy_to_json
from server.catalog.store import new_id
from server.phi import Keyring
from server.storage.tables import (
    appointments,
    crisis_settings,
    groups,
    oncall_shifts,
    programs,
    sessions,
    staff,
)


class RosterError(Exception):
    """A shift that cannot be stored; `field` names the input at fault."""

    def __init__(self, field: str, reason: str, status: int = 422) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where a program's notifications go and the secret that signs them."""

    url: str
    secret: bytes


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _shift(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "program_id": row.program_id,
        "role": row.role,
        "staff_id": row.staff_id,
        "starts_at": _iso(row.starts_at),
        "ends_at": _iso(row.ends_at),
    }


async def add_shift(
    conn: AsyncConnection,
    *,
    program_id: str,
    role: str,
    staff_id: str,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    created_by: str | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """Put a staff member of the program on call for one role and window."""
    if role not in ONCALL_ROLES:
        raise RosterError("role", f"must be one of {', '.join(ONCALL_ROLES)}")
    if ends_at <= starts_at:
        raise RosterError("ends_at", "must be after starts_at")
    member = (
        await conn.execute(
            sa.select(staff.c.program_id, staff.c.role, staff.c.disabled).where(
                staff.c.id == staff_id
            )
        )
    ).first()
    if member is None or member.program_id != program_id or member.disabled:
        raise RosterError("staff_id", "must be an active staff member of the program")
    if member.role == "admin":
        # Admins keep the system running; the people paged must be clinical staff.
        raise RosterError("staff_id", "on-call staff must be supervisors or clinicians")
    shift_id = new_id()
    await conn.execute(
        oncall_shifts.insert().values(
            id=shift_id,
            program_id=program_id,
            role=role,
            staff_id=staff_id,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
            created_at=now,
        )
    )
    row = (await conn.execute(sa.select(oncall_shifts).where(oncall_shifts.c.id == shift_id))).one()
    return _shift(row)


async def remove_shift(conn: AsyncConnection, shift_id: str) -> str | None:
    """Delete a shift; return its program id, or None when there was no such shift."""
    program_id = await conn.scalar(
        sa.select(oncall_shifts.c.program_id).where(oncall_shifts.c.id == shift_id)
    )
    if program_id is not None:
        await conn.execute(oncall_shifts.delete().where(oncall_shifts.c.id == shift_id))
    return program_id


async def shifts(
    conn: AsyncConnection, program_id: str | None, since: dt.datetime
) -> list[dict[str, Any]]:
    """Shifts that have not ended by `since`, for one program or (None) all of them."""
    query = sa.select(oncall_shifts).where(oncall_shifts.c.ends_at > since)
    if program_id is not None:
        query = query.where(oncall_shifts.c.program_id == program_id)
    found = await conn.execute(query.order_by(oncall_shifts.c.starts_at, oncall_shifts.c.role))
    return [_shift(row) for row in found]


async def on_call(conn: AsyncConnection, program_id: str, at: dt.datetime) -> dict[str, str | None]:
    """Who holds each on-call role at `at` (the latest-starting shift wins an overlap)."""
    found = await conn.execute(
        sa.select(oncall_shifts.c.role, oncall_shifts.c.staff_id)
        .where(
            oncall_shifts.c.program_id == program_id,
            oncall_shifts.c.starts_at <= at,
            oncall_shifts.c.ends_at > at,
        )
        .order_by(oncall_shifts.c.starts_at)
    )
    holders: dict[str, str | None] = dict.fromkeys(ONCALL_ROLES)
    for row in found:
        holders[row.role] = row.staff_id
    return holders


async def float_roster(
    conn: AsyncConnection, session_id: str, at: dt.datetime
) -> list[dict[str, str]]:
    """Who can be called in to keep a group: the program's on-call staff, then its other
    clinicians (not already running this session), names and roles only."""
    program_id = await conn.scalar(
        sa.select(sessions.c.program_id).where(sessions.c.id == session_id)
    )
    if program_id is None:
        return []
    holders = await on_call(conn, program_id, at)
    running = set((await session_clinicians(conn, session_id)).values())
    rows = (
        await conn.execute(
            sa.select(staff.c.id, staff.c.display_name, staff.c.role).where(
                staff.c.program_id == program_id, staff.c.disabled.is_(False)
            )
        )
    ).all()
    names = {row.id: row for row in rows}
    out: list[dict[str, str]] = []
    for role, staff_id in holders.items():
        if staff_id in names and staff_id not in running:
            out.append({"name": names[staff_id].display_name, "as": role.replace("_", " ")})
    listed = {entry["name"] for entry in out}
    for row in rows:
        if row.role == "clinician" and row.id not in running and row.display_name not in listed:
            out.append({"name": row.display_name, "as": "clinician"})
    return out


async def on_call_anywhere(conn: AsyncConnection, staff_id: str, at: dt.datetime) -> set[str]:
    """The programs for which this staff member is on call at `at`."""
    found = await conn.execute(
        sa.select(oncall_shifts.c.program_id).where(
            oncall_shifts.c.staff_id == staff_id,
            oncall_shifts.c.starts_at <= at,
            oncall_shifts.c.ends_at > at,
        )
    )
    return {row.program_id for row in found}


async def session_clinicians(conn: AsyncConnection, session_id: str) -> dict[str, str | None]:
    """The session's facilitator and co-facilitator (a one-on-one has only the former)."""
    row = (
        await conn.execute(
            sa.select(
                groups.c.lead_clinician_id,
                groups.c.cofacilitator_id,
                appointments.c.clinician_id,
            )
            .select_from(sessions)
            .outerjoin(groups, groups.c.id == sessions.c.group_id)
            .outerjoin(appointments, appointments.c.id == sessions.c.appointment_id)
            .where(sessions.c.id == session_id)
        )
    ).first()
    if row is None:
        return {"facilitator": None, "cofacilitator": None}
    return {
        "facilitator": row.lead_clinician_id or row.clinician_id,
        "cofacilitator": row.cofacilitator_id,
    }


# Settings ----------------------------------------------------------------------------------


def _webhook_context(program_id: str, field: str) -> str:
    return f"crisis_settings/{program_id}/{field}"


def webhook_url_context(program_id: str) -> str:
    """The sealing context of a program's webhook URL (for key rotation)."""
    return _webhook_context(program_id, "webhook_url")


def webhook_secret_context(program_id: str) -> str:
    """The sealing context of a program's webhook secret (for key rotation)."""
    return _webhook_context(program_id, "webhook_secret")


async def policy_for(conn: AsyncConnection, program_id: str) -> Policy:
    """The program's escalation policy (the CLINICAL.md defaults when none is set)."""
    raw = await conn.scalar(
        sa.select(crisis_settings.c.policy).where(crisis_settings.c.program_id == program_id)
    )
    return policy_from_json(raw)


async def webhook_for(conn: AsyncConnection, keyring: Keyring, program_id: str) -> Webhook | None:
    """The program's webhook, opened, or None when it has none."""
    row = (
        await conn.execute(
            sa.select(
                crisis_settings.c.webhook_url_enc, crisis_settings.c.webhook_secret_enc
            ).where(crisis_settings.c.program_id == program_id)
        )
    ).first()
    if row is None or row.webhook_url_enc is None or row.webhook_secret_enc is None:
        return None
    url = keyring.open(row.webhook_url_enc, context=webhook_url_context(program_id))
    secret = keyring.open(row.webhook_secret_enc, context=webhook_secret_context(program_id))
    return Webhook(url, secret.encode())


async def program_exists(conn: AsyncConnection, program_id: str) -> bool:
    """True when the program exists."""
    return (
        await conn.scalar(sa.select(programs.c.id).where(programs.c.id == program_id))
    ) is not None


async def save_settings(
    conn: AsyncConnection,
    keyring: Keyring,
    program_id: str,
    *,
    policy: dict[str, Any] | None,
    webhook_url: str | None,
    webhook_secret: str | None,
    clear_webhook: bool,
    updated_by: str | None,
    now: dt.datetime,
) -> None:
    """Store the policy (already validated) and, when given, the webhook, sealed."""
    values: dict[str, Any] = {"updated_at": now, "updated_by": updated_by}
    if policy is not None:
        values["policy"] = policy
    if clear_webhook:
        values["webhook_url_enc"] = None
        values["webhook_secret_enc"] = None
    if webhook_url is not None:
        values["webhook_url_enc"] = keyring.seal(
            webhook_url, context=webhook_url_context(program_id)
        )
    if webhook_secret is not None:
        values["webhook_secret_enc"] = keyring.seal(
            webhook_secret, context=webhook_secret_context(program_id)
        )
    changed = await conn.execute(
        crisis_settings.update().where(crisis_settings.c.program_id == program_id).values(values)
    )
    if changed.rowcount == 0:
        await conn.execute(crisis_settings.insert().values(program_id=program_id, **values))


async def settings_view(conn: AsyncConnection, program_id: str) -> dict[str, Any]:
    """What admins see: the policy, and whether a webhook is set (never its secret)."""
    row = (
        await conn.execute(
            sa.select(crisis_settings).where(crisis_settings.c.program_id == program_id)
        )
    ).first()
    policy = policy_from_json(row.policy if row is not None else None)
    return {
        "program_id": program_id,
        "policy": policy_to_json(policy),
        "policy_is_default": row is None or row.policy is None,
        "webhook_configured": row is not None and row.webhook_url_enc is not None,
    }
