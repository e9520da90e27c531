"""Patients in storage: their PHI sealed field by field, names for display, caseloads."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.catalog.schemas import PatientIn
from server.catalog.store import CatalogError, Record, json_value, new_id, require_program
from server.phi import Keyring
from server.storage.tables import appointments, group_members, groups, patients

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
    await require_program(conn, data.program_id)
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
        "created_at": json_value(data["created_at"]),
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
