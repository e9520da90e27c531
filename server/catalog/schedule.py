"""What meets when: groups and their weekly schedules, one-on-one appointments, and the
session instances both make.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.schedule import WeeklySlot, occurrences, zone
from server.catalog.schemas import AppointmentIn, GroupIn
from server.catalog.store import (
    CatalogError,
    Record,
    as_record,
    exists,
    json_value,
    new_id,
    require_clinician,
    require_program,
)
from server.storage.tables import (
    appointments,
    family_sessions,
    group_members,
    groups,
    patients,
    sessions,
)

# Groups ---------------------------------------------------------------------------------


async def create_group(
    conn: AsyncConnection, data: GroupIn, now: dt.datetime, horizon_days: int
) -> Record:
    """Add a group with its members and schedule, and its sessions for the horizon."""
    group_id = new_id()
    await _check_group(conn, data, group_id)
    row = {"id": group_id, **_group_values(data), "created_at": now}
    await conn.execute(groups.insert().values(row))
    if data.member_ids:
        await conn.execute(
            group_members.insert(),
            [
                {"group_id": group_id, "patient_id": pid, "joined_on": data.starts_on}
                for pid in data.member_ids
            ],
        )
    created = await extend_group_sessions(conn, group_id, now, horizon_days)
    return {key: json_value(v) for key, v in row.items()} | {
        "member_ids": list(data.member_ids),
        "sessions_created": created,
    }


def _group_values(data: GroupIn) -> Record:
    return {
        "program_id": data.program_id,
        "name": data.name,
        "lead_clinician_id": data.lead_clinician_id,
        "cofacilitator_id": data.cofacilitator_id,
        "time_zone": data.time_zone,
        "schedule": [slot.slot().to_json() for slot in data.schedule],
        "template": data.template,
        "starts_on": data.starts_on,
        "ends_on": data.ends_on,
    }


async def _check_group(conn: AsyncConnection, data: GroupIn, group_id: str) -> None:
    await require_program(conn, data.program_id)
    await require_clinician(conn, "lead_clinician_id", data.lead_clinician_id, data.program_id)
    if data.cofacilitator_id is not None:
        await require_clinician(conn, "cofacilitator_id", data.cofacilitator_id, data.program_id)
    taken = sa.select(groups.c.id).where(
        groups.c.program_id == data.program_id, groups.c.name == data.name, groups.c.id != group_id
    )
    if await exists(conn, taken):
        raise CatalogError("name", "this program already has a group with this name", status=409)
    if data.member_ids:
        found = await conn.execute(
            sa.select(patients.c.id).where(
                patients.c.id.in_(data.member_ids), patients.c.program_id == data.program_id
            )
        )
        missing = set(data.member_ids) - {row[0] for row in found}
        if missing:
            raise CatalogError(
                "member_ids", f"{len(missing)} id(s) are not patients of this program"
            )


async def _set_members(
    conn: AsyncConnection, group_id: str, wanted: set[str], today: dt.date
) -> None:
    active = {
        row.patient_id
        for row in await conn.execute(
            sa.select(group_members.c.patient_id).where(
                group_members.c.group_id == group_id, group_members.c.left_on.is_(None)
            )
        )
    }
    if active - wanted:
        await conn.execute(
            group_members.update()
            .where(
                group_members.c.group_id == group_id,
                group_members.c.patient_id.in_(active - wanted),
                group_members.c.left_on.is_(None),
            )
            .values(left_on=today)
        )
    for patient_id in wanted - active:
        rejoined = await conn.execute(
            group_members.update()
            .where(group_members.c.group_id == group_id, group_members.c.patient_id == patient_id)
            .values(left_on=None, joined_on=today)
        )
        if rejoined.rowcount == 0:
            await conn.execute(
                group_members.insert().values(
                    group_id=group_id, patient_id=patient_id, joined_on=today
                )
            )


async def update_group(
    conn: AsyncConnection, group_id: str, data: GroupIn, now: dt.datetime, horizon_days: int
) -> Record:
    """Change a group: members join or leave today, and future sessions follow the schedule."""
    current = (await conn.execute(sa.select(groups).where(groups.c.id == group_id))).first()
    if current is None:
        raise CatalogError("id", "no such group", status=404)
    if current.program_id != data.program_id:
        raise CatalogError("program_id", "a group cannot be moved to another program")
    await _check_group(conn, data, group_id)
    await conn.execute(groups.update().where(groups.c.id == group_id).values(_group_values(data)))
    today = now.astimezone(zone(data.time_zone)).date()
    await _set_members(conn, group_id, set(data.member_ids), today)
    # Future sessions the new schedule no longer has are cancelled, not deleted: links and
    # records that point at them stay meaningful.
    last = today + dt.timedelta(days=horizon_days)
    if data.ends_on is not None:
        last = min(last, data.ends_on)
    slots = [slot.slot() for slot in data.schedule]
    first = max(today, data.starts_on)
    keep = {o.starts_at for o in occurrences(slots, data.time_zone, first, last)}
    future = await conn.execute(
        sa.select(sessions.c.id, sessions.c.starts_at).where(
            sessions.c.group_id == group_id,
            sessions.c.state == "scheduled",
            sessions.c.starts_at > now,
        )
    )
    dropped = [row.id for row in future if row.starts_at not in keep]
    if dropped:
        await conn.execute(
            sessions.update().where(sessions.c.id.in_(dropped)).values(state="cancelled")
        )
    await conn.execute(
        sessions.update()
        .where(
            sessions.c.group_id == group_id,
            sessions.c.state == "scheduled",
            sessions.c.starts_at > now,
        )
        .values(template=data.template)
    )
    created = await extend_group_sessions(conn, group_id, now, horizon_days)
    found = await get_group(conn, group_id)
    assert found is not None
    return found | {"sessions_created": created, "sessions_cancelled": len(dropped)}


async def get_group(conn: AsyncConnection, group_id: str) -> Record | None:
    """One group with its current member ids, or None."""
    row = (await conn.execute(sa.select(groups).where(groups.c.id == group_id))).first()
    if row is None:
        return None
    record = as_record(row)
    members = await conn.execute(
        sa.select(group_members.c.patient_id)
        .where(group_members.c.group_id == group_id, group_members.c.left_on.is_(None))
        .order_by(group_members.c.patient_id)
    )
    record["member_ids"] = [m.patient_id for m in members]
    return record


async def list_groups(
    conn: AsyncConnection, program_id: str | None, clinician_id: str | None = None
) -> list[Record]:
    """Groups with their member ids; a clinician sees only the groups they run."""
    query = sa.select(groups).order_by(groups.c.name)
    if program_id is not None:
        query = query.where(groups.c.program_id == program_id)
    if clinician_id is not None:
        query = query.where(
            sa.or_(
                groups.c.lead_clinician_id == clinician_id,
                groups.c.cofacilitator_id == clinician_id,
            )
        )
    found = [as_record(row) for row in await conn.execute(query)]
    if not found:
        return []
    members = await conn.execute(
        sa.select(group_members.c.group_id, group_members.c.patient_id)
        .where(group_members.c.group_id.in_([g["id"] for g in found]))
        .where(group_members.c.left_on.is_(None))
        .order_by(group_members.c.patient_id)
    )
    by_group: dict[str, list[str]] = {}
    for group_id, patient_id in members:
        by_group.setdefault(group_id, []).append(patient_id)
    for group in found:
        group["member_ids"] = by_group.get(group["id"], [])
    return found


async def extend_group_sessions(
    conn: AsyncConnection, group_id: str, now: dt.datetime, horizon_days: int
) -> int:
    """Create the group's missing session instances from today to the horizon."""
    group = (await conn.execute(sa.select(groups).where(groups.c.id == group_id))).one()
    today = now.astimezone(zone(group.time_zone)).date()
    first = max(today, group.starts_on)
    last = today + dt.timedelta(days=horizon_days)
    if group.ends_on is not None:
        last = min(last, group.ends_on)
    if last < first:
        return 0
    slots = [WeeklySlot.from_json(slot) for slot in group.schedule]
    wanted = [o for o in occurrences(slots, group.time_zone, first, last) if o.ends_at > now]
    if not wanted:
        return 0
    existing = {
        row[0]
        for row in await conn.execute(
            sa.select(sessions.c.starts_at).where(
                sessions.c.group_id == group_id,
                sessions.c.starts_at >= wanted[0].starts_at,
            )
        )
    }
    rows = [
        {
            "id": new_id(),
            "program_id": group.program_id,
            "kind": "group",
            "group_id": group_id,
            "template": group.template,
            "starts_at": o.starts_at,
            "ends_at": o.ends_at,
            "state": "scheduled",
            "created_at": now,
        }
        for o in wanted
        if o.starts_at not in existing
    ]
    if rows:
        await conn.execute(sessions.insert(), rows)
    return len(rows)


async def extend_all_group_sessions(
    conn: AsyncConnection, now: dt.datetime, horizon_days: int
) -> int:
    """Keep every running group's sessions scheduled out to the horizon."""
    today = now.date()
    ids = await conn.execute(
        sa.select(groups.c.id).where(sa.or_(groups.c.ends_on.is_(None), groups.c.ends_on >= today))
    )
    total = 0
    for (group_id,) in ids.all():
        total += await extend_group_sessions(conn, group_id, now, horizon_days)
    return total


# Appointments and sessions --------------------------------------------------------------


async def create_appointment(
    conn: AsyncConnection, data: AppointmentIn, now: dt.datetime
) -> Record:
    """Add a one-on-one appointment and its session instance."""
    await require_program(conn, data.program_id)
    await require_clinician(conn, "clinician_id", data.clinician_id, data.program_id)
    patient_ok = sa.select(patients.c.id).where(
        patients.c.id == data.patient_id, patients.c.program_id == data.program_id
    )
    if not await exists(conn, patient_ok):
        raise CatalogError("patient_id", "not a patient of this program")
    starts = data.starts_at.astimezone(dt.UTC)
    ends = starts + dt.timedelta(minutes=data.minutes)
    if ends <= now:
        raise CatalogError("starts_at", "this appointment would already be over")
    appointment_id = new_id()
    template = data.template or ("family-50" if data.kind == "family" else "individual-50")
    row = {
        "id": appointment_id,
        "program_id": data.program_id,
        "patient_id": data.patient_id,
        "clinician_id": data.clinician_id,
        "template": template,
        "starts_at": starts,
        "ends_at": ends,
        "created_at": now,
    }
    await conn.execute(appointments.insert().values(row))
    session_id = new_id()
    await conn.execute(
        sessions.insert().values(
            id=session_id,
            program_id=data.program_id,
            kind="individual",
            appointment_id=appointment_id,
            template=template,
            starts_at=starts,
            ends_at=ends,
            state="scheduled",
            created_at=now,
        )
    )
    if data.kind == "family":
        # Stored as an appointment's session; the family marker makes its room `family`.
        await conn.execute(family_sessions.insert().values(session_id=session_id, created_at=now))
    return {key: json_value(v) for key, v in row.items()} | {
        "session_id": session_id,
        "kind": data.kind,
    }


async def list_appointments(
    conn: AsyncConnection, program_id: str | None, clinician_id: str | None = None
) -> list[Record]:
    """Appointments in start order; a clinician sees only their own."""
    query = sa.select(appointments).order_by(appointments.c.starts_at)
    if program_id is not None:
        query = query.where(appointments.c.program_id == program_id)
    if clinician_id is not None:
        query = query.where(appointments.c.clinician_id == clinician_id)
    return [as_record(row) for row in await conn.execute(query)]


async def list_sessions(
    conn: AsyncConnection,
    program_id: str | None,
    start: dt.datetime,
    end: dt.datetime,
    clinician_id: str | None = None,
) -> list[Record]:
    """Session instances starting in [start, end); a clinician sees only theirs."""
    query = (
        sa.select(sessions)
        .outerjoin(groups, groups.c.id == sessions.c.group_id)
        .outerjoin(appointments, appointments.c.id == sessions.c.appointment_id)
        .where(sessions.c.starts_at >= start, sessions.c.starts_at < end)
        .order_by(sessions.c.starts_at, sessions.c.id)
    )
    if program_id is not None:
        query = query.where(sessions.c.program_id == program_id)
    if clinician_id is not None:
        query = query.where(
            sa.or_(
                groups.c.lead_clinician_id == clinician_id,
                groups.c.cofacilitator_id == clinician_id,
                appointments.c.clinician_id == clinician_id,
            )
        )
    return [as_record(row) for row in await conn.execute(query)]
