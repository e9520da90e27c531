"""What one staff member may see: admins their whole organisation, clinicians their caseload."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from server.accounts.auth import StaffIdentity
from server.accounts.permissions import Role
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule


def program_scope(who: StaffIdentity) -> str | None:
    """Admins see every program; everyone else sees their own."""
    return None if who.role is Role.ADMIN else who.program_id


def clinician_scope(who: StaffIdentity) -> str | None:
    """Clinicians' lists are narrowed to what they run themselves."""
    return who.id if who.role is Role.CLINICIAN else None


async def patient_visible(conn: AsyncConnection, who: StaffIdentity, patient_id: str) -> bool:
    """True when `who` may open this patient's record."""
    row = await catalog_patients.get_patient_row(conn, patient_id)
    if row is None:
        return False
    if who.role is Role.ADMIN:
        return True
    if who.role is Role.CLINICIAN and row.program_id == who.program_id:
        return patient_id in await catalog_patients.patients_of_clinician(conn, who.id)
    return False


async def group_visible(
    conn: AsyncConnection, who: StaffIdentity, group_id: str
) -> dict[str, Any] | None:
    """The group when `who` may see it, else None."""
    group = await catalog_schedule.get_group(conn, group_id)
    if group is None:
        return None
    if who.role is Role.ADMIN:
        return group
    if group["program_id"] != who.program_id:
        return None
    if who.role is Role.CLINICIAN and who.id not in (
        group["lead_clinician_id"],
        group["cofacilitator_id"],
    ):
        return None
    return group
