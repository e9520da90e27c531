"""The catalog in storage: record ids, the error it answers with, programs and staff.

Patients (patients.py) and what meets when (schedule.py) are beside this module.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.schedule import zone
from server.catalog.schemas import InviteIn, ProgramIn
from server.storage.tables import programs, staff

Record = dict[str, Any]


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


def json_value(value: Any) -> Any:
    """A column value as JSON can carry it (dates as ISO 8601)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def as_record(row: sa.Row[Any], *, skip: Collection[str] = ()) -> Record:
    """A row as a JSON-ready record, without the `skip` columns."""
    return {key: json_value(value) for key, value in row._mapping.items() if key not in skip}


async def exists(conn: AsyncConnection, query: sa.Select[Any]) -> bool:
    """Whether `query` finds at least one row."""
    return (await conn.execute(query.limit(1))).first() is not None


# Programs -------------------------------------------------------------------------------


async def create_program(conn: AsyncConnection, data: ProgramIn, now: dt.datetime) -> Record:
    """Add a program; its name must be unique."""
    if await exists(conn, sa.select(programs.c.id).where(programs.c.name == data.name)):
        raise CatalogError("name", "a program with this name already exists", status=409)
    row = {"id": new_id(), **data.model_dump(), "created_at": now}
    await conn.execute(programs.insert().values(row))
    return {key: json_value(value) for key, value in row.items()}


async def list_programs(conn: AsyncConnection, only: str | None = None) -> list[Record]:
    """Every program, or just `only`."""
    query = sa.select(programs).order_by(programs.c.name)
    if only is not None:
        query = query.where(programs.c.id == only)
    return [as_record(row) for row in await conn.execute(query)]


async def program_today(conn: AsyncConnection, program_id: str, now: dt.datetime) -> dt.date:
    """Today's date in the program's own time zone (evening groups run past UTC midnight)."""
    name = (
        await conn.execute(sa.select(programs.c.time_zone).where(programs.c.id == program_id))
    ).scalar_one_or_none()
    return now.astimezone(zone(name)).date() if name else now.date()


async def require_program(conn: AsyncConnection, program_id: str) -> None:
    """Raise a CatalogError on `program_id` unless that program exists."""
    if not await exists(conn, sa.select(programs.c.id).where(programs.c.id == program_id)):
        raise CatalogError("program_id", "no such program")


# Staff ----------------------------------------------------------------------------------


async def create_staff(
    conn: AsyncConnection, data: InviteIn, password_hash: str, now: dt.datetime
) -> Record:
    """Add a staff account with an already-hashed password."""
    await require_program(conn, data.program_id)
    email = data.email.lower()
    if await exists(conn, sa.select(staff.c.id).where(staff.c.email == email)):
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
    return {key: json_value(v) for key, v in row.items() if key != "password_hash"} | {
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
    record = as_record(row, skip=STAFF_SECRETS)
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
    if await exists(conn, clash):
        raise CatalogError("name", "a program with this name already exists", status=409)
    result = await conn.execute(
        programs.update().where(programs.c.id == program_id).values(**data.model_dump())
    )
    if result.rowcount != 1:
        raise CatalogError("id", "no such program", status=404)
    (found,) = await list_programs(conn, program_id)
    return found


async def require_clinician(
    conn: AsyncConnection, field: str, staff_id: str, program_id: str
) -> None:
    """Raise a CatalogError on `field` unless `staff_id` is an active clinician of the program."""
    query = sa.select(staff.c.id).where(
        staff.c.id == staff_id,
        staff.c.program_id == program_id,
        staff.c.role == "clinician",
        staff.c.disabled.is_(False),
    )
    if not await exists(conn, query):
        raise CatalogError(field, "must be an active clinician of this program")
