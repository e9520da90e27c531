"""Programs, staff, patients, groups, appointments and session instances in storage."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Collection, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.schedule import WeeklySlot, occurrences, zone
from server.catalog.schemas import AppointmentIn, GroupIn, InviteIn, PatientIn, ProgramIn
from server.phi import Keyring
from server.storage.tables import (
    appointments,
    group_members,
    groups,
    patients,
    programs,
    sessions,
    staff,
)

Record = dict[str, Any]
PATIENT_PHI = (
    "legal_name",
    "display_name",
    "date_of_birth",
    "home_address",
    "backup_phone",
    "alternate_phone",
    "support_person",
    "preferred_ed",
)


class CatalogError(Exception):
    """Input that is well-formed but refers to something wrong (field, reason)."""

    def __init__(self, field: str, reason: str, *, status: int = 422) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


def new_id() -> str:
    """A random, unguessable record id (UUID4: 122 random bits)."""
    return str(uuid.uuid4())


def _json(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _record(row: sa.Row[Any], *, skip: Collection[str] = ()) -> Record:
    return {key: _json(value) for key, value in row._mapping.items() if key not in skip}


async def _exists(conn: AsyncConnection, query: sa.Select[Any]) -> bool:
    return (await conn.execute(query.limit(1))).first() is not None


# Programs -------------------------------------------------------------------------------


async def create_program(conn: AsyncConnection, data: ProgramIn, now: dt.datetime) -> Record:
    """Add a program; its name must be unique."""
    if await _exists(conn, sa.select(programs.c.id).where(programs.c.name == data.name)):
        raise CatalogError("name", "a program with this name already exists", status=409)
    row = {"id": new_id(), **data.model_dump(), "created_at": now}
    await conn.execute(programs.insert().values(row))
    return {key: _json(value) for key, value in row.items()}


async def list_programs(conn: AsyncConnection, only: str | None = None) -> list[Record]:
    """Every program, or just `only`."""
    query = sa.select(programs).order_by(programs.c.name)
    if only is not None:
        query = query.where(programs.c.id == only)
    return [_record(row) for row in await conn.execute(query)]


async def program_today(conn: AsyncConnection, program_id: str, now: dt.datetime) -> dt.date:
    """Today's date in the program's own time zone (evening groups run past UTC midnight)."""
    name = (
        await conn.execute(sa.select(programs.c.time_zone).where(programs.c.id == program_id))
    ).scalar_one_or_none()
    return now.astimezone(zone(name)).date() if name else now.date()


async def _require_program(conn: AsyncConnection, program_id: str) -> None:
    if not await _exists(conn, sa.select(programs.c.id).where(programs.c.id == program_id)):
        raise CatalogError("program_id", "no such program")


# Staff ----------------------------------------------------------------------------------


async def create_staff(
    conn: AsyncConnection, data: InviteIn, password_hash: str, now: dt.datetime
) -> Record:
    """Add a staff account with an already-hashed password."""
    await _require_program(conn, data.program_id)
    email = data.email.lower()
    if await _exists(conn, sa.select(staff.c.id).where(staff.c.email == email)):
        raise CatalogError("email", "an account with this e-mail already exists", status=409)
    row = {
        "id": new_id(),
        "program_id": data.program_id,
        "email": email,
        "display_name": data.display_name,
        "role": data.role,
        "licence": data.licence,
        "password_hash": password_hash,
        "created_at": now,
    }
    await conn.execute(staff.insert().values(row))
    return {key: _json(v) for key, v in row.items() if key != "password_hash"} | {
        "disabled": False,
        "mfa_enrolled": False,
    }


async def list_staff(conn: AsyncConnection, program_id: str | None) -> list[Record]:
    """Staff accounts, without password hashes."""
    query = sa.select(staff).order_by(staff.c.role, staff.c.display_name)
    if program_id is not None:
        query = query.where(staff.c.program_id == program_id)
    return [_staff_record(row) for row in await conn.execute(query)]


STAFF_SECRETS = frozenset(
    {"password_hash", "totp_secret_enc", "totp_last_step", "session_generation"}
)


def _staff_record(row: Any) -> Record:
    record = _record(row, skip=STAFF_SECRETS)
    record["mfa_enrolled"] = row.totp_enrolled_at is not None
    return record


async def set_staff_disabled(conn: AsyncConnection, staff_id: str, disabled: bool) -> None:
    """Disable an account (its sessions end at once) or enable it again."""
    values: dict[str, Any] = {"disabled": disabled}
    if disabled:
        # Enabling again must not bring back the sessions that disabling ended.
        values["session_generation"] = staff.c.session_generation + 1
    result = await conn.execute(staff.update().where(staff.c.id == staff_id).values(**values))
    if result.rowcount != 1:
        raise CatalogError("id", "no such staff account", status=404)


async def update_program(conn: AsyncConnection, program_id: str, data: ProgramIn) -> Record:
    """Change a program's name, kind, phone, time zone or join-link settings."""
    clash = sa.select(programs.c.id).where(
        programs.c.name == data.name, programs.c.id != program_id
    )
    if await _exists(conn, clash):
        raise CatalogError("name", "a program with this name already exists", status=409)
    result = await conn.execute(
        programs.update().where(programs.c.id == program_id).values(**data.model_dump())
    )
    if result.rowcount != 1:
        raise CatalogError("id", "no such program", status=404)
    (found,) = await list_programs(conn, program_id)
    return found


async def _require_clinician(
    conn: AsyncConnection, field: str, staff_id: str, program_id: str
) -> None:
    query = sa.select(staff.c.id).where(
        staff.c.id == staff_id,
        staff.c.program_id == program_id,
        staff.c.role == "clinician",
        staff.c.disabled.is_(False),
    )
    if not await _exists(conn, query):
        raise CatalogError(field, "must be an active clinician of this program")


# Patients -------------------------------------------------------------------------------


def patient_context(patient_id: str, field: str) -> str:
    """The encryption context that binds a sealed value to its patient and field."""
    return f"patients/{patient_id}/{field}"


def _sealed_patient_fields(keyring: Keyring, patient_id: str, data: PatientIn) -> Record:
    plain = data.model_dump()
    values: Record = {
        "time_zone": data.time_zone,
        "adolescent": data.adolescent,
        "support_release": data.support_release,
        "screening_cadence": data.screening_cadence,
    }
    for field in PATIENT_PHI:
        value = plain[field]
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        values[f"{field}_enc"] = keyring.seal_optional(
            value, context=patient_context(patient_id, field)
        )
    return values


async def create_patient(
    conn: AsyncConnection, keyring: Keyring, data: PatientIn, now: dt.datetime
) -> Record:
    """Add a patient; identifying fields are encrypted before they reach storage."""
    await _require_program(conn, data.program_id)
    patient_id = new_id()
    values: Record = {
        "id": patient_id,
        "program_id": data.program_id,
        "created_at": now,
        **_sealed_patient_fields(keyring, patient_id, data),
    }
    await conn.execute(patients.insert().values(values))
    return _patient_record(keyring, values)


async def update_patient(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, data: PatientIn
) -> Record:
    """Replace a patient's intake record (the program stays the same)."""
    current = await get_patient_row(conn, patient_id)
    if current is None:
        raise CatalogError("id", "no such patient", status=404)
    if current.program_id != data.program_id:
        raise CatalogError("program_id", "a patient cannot be moved to another program")
    values = _sealed_patient_fields(keyring, patient_id, data)
    await conn.execute(patients.update().where(patients.c.id == patient_id).values(values))
    return _patient_record(keyring, {**dict(current._mapping), **values})


async def get_patient_row(conn: AsyncConnection, patient_id: str) -> Any:
    """The stored (encrypted) patient row, or None."""
    return (await conn.execute(sa.select(patients).where(patients.c.id == patient_id))).first()


async def get_patient(conn: AsyncConnection, keyring: Keyring, patient_id: str) -> Record | None:
    """One patient with PHI decrypted, or None."""
    row = await get_patient_row(conn, patient_id)
    return None if row is None else _patient_record(keyring, row._mapping)


def _patient_record(keyring: Keyring, row: Any) -> Record:
    data = dict(row)
    out: Record = {
        "id": data["id"],
        "program_id": data["program_id"],
        "time_zone": data["time_zone"],
        "adolescent": bool(data["adolescent"]),
        "support_release": bool(data.get("support_release", False)),
        "screening_cadence": data.get("screening_cadence"),
        "created_at": _json(data["created_at"]),
    }
    for field in PATIENT_PHI:
        value = keyring.open_optional(
            data[f"{field}_enc"], context=patient_context(data["id"], field)
        )
        out[field] = json.loads(value) if field == "support_person" and value else value
    return out


async def display_names(
    conn: AsyncConnection, keyring: Keyring, patient_ids: Iterable[str]
) -> dict[str, str]:
    """Patients' group display names by id (no other PHI is opened)."""
    ids = list(patient_ids)
    if not ids:
        return {}
    rows = await conn.execute(
        sa.select(patients.c.id, patients.c.display_name_enc).where(patients.c.id.in_(ids))
    )
    return {
        row.id: keyring.open(row.display_name_enc, context=patient_context(row.id, "display_name"))
        for row in rows
    }


async def list_patients(
    conn: AsyncConnection,
    keyring: Keyring,
    program_id: str | None,
    only: Iterable[str] | None = None,
) -> list[Record]:
    """Patients with their PHI decrypted, optionally limited to the ids in `only`."""
    query = sa.select(patients).order_by(patients.c.created_at, patients.c.id)
    if program_id is not None:
        query = query.where(patients.c.program_id == program_id)
    if only is not None:
        query = query.where(patients.c.id.in_(list(only)))
    rows = await conn.execute(query)
    return [_patient_record(keyring, row._mapping) for row in rows]


async def patients_of_clinician(conn: AsyncConnection, clinician_id: str) -> set[str]:
    """Ids of the patients in a clinician's groups or with an appointment with them."""
    in_groups = (
        sa.select(group_members.c.patient_id)
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(
            sa.or_(
                groups.c.lead_clinician_id == clinician_id,
                groups.c.cofacilitator_id == clinician_id,
            )
        )
    )
    seen = sa.select(appointments.c.patient_id).where(appointments.c.clinician_id == clinician_id)
    rows = await conn.execute(sa.union(in_groups, seen))
    return {row[0] for row in rows}


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
    return {key: _json(v) for key, v in row.items()} | {
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
    await _require_program(conn, data.program_id)
    await _require_clinician(conn, "lead_clinician_id", data.lead_clinician_id, data.program_id)
    if data.cofacilitator_id is not None:
        await _require_clinician(conn, "cofacilitator_id", data.cofacilitator_id, data.program_id)
    taken = sa.select(groups.c.id).where(
        groups.c.program_id == data.program_id, groups.c.name == data.name, groups.c.id != group_id
    )
    if await _exists(conn, taken):
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
    record = _record(row)
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
    found = [_record(row) for row in await conn.execute(query)]
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
    await _require_program(conn, data.program_id)
    await _require_clinician(conn, "clinician_id", data.clinician_id, data.program_id)
    patient_ok = sa.select(patients.c.id).where(
        patients.c.id == data.patient_id, patients.c.program_id == data.program_id
    )
    if not await _exists(conn, patient_ok):
        raise CatalogError("patient_id", "not a patient of this program")
    starts = data.starts_at.astimezone(dt.UTC)
    ends = starts + dt.timedelta(minutes=data.minutes)
    if ends <= now:
        raise CatalogError("starts_at", "this appointment would already be over")
    appointment_id = new_id()
    row = {
        "id": appointment_id,
        "program_id": data.program_id,
        "patient_id": data.patient_id,
        "clinician_id": data.clinician_id,
        "template": data.template,
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
            template=data.template,
            starts_at=starts,
            ends_at=ends,
            state="scheduled",
            created_at=now,
        )
    )
    return {key: _json(v) for key, v in row.items()} | {"session_id": session_id}


async def list_appointments(
    conn: AsyncConnection, program_id: str | None, clinician_id: str | None = None
) -> list[Record]:
    """Appointments in start order; a clinician sees only their own."""
    query = sa.select(appointments).order_by(appointments.c.starts_at)
    if program_id is not None:
        query = query.where(appointments.c.program_id == program_id)
    if clinician_id is not None:
        query = query.where(appointments.c.clinician_id == clinician_id)
    return [_record(row) for row in await conn.execute(query)]


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
    return [_record(row) for row in await conn.execute(query)]
