"""A patient's safety data for one session, gathered for the people on a crisis event.

CLINICAL.md sections 2 and 7: the confirmed location and callback phone from this session's
check-in, the backup and alternate phones, the support person and their release, the
current safety plan, and the local emergency numbers for the confirmed location. Every
caller audits the read; nothing here logs a value.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.directory import LocalEmergencyInfo
from crisis.safety_plan import SafetyPlan, parse_plan
from rooms.consent import current_consents
from rooms.schedule import zone
from server.catalog import patients as catalog_patients
from server.catalog.store import new_id
from server.checkin import safety_checks as checkin_safety
from server.consent import ledger as consent_ledger
from server.directory import store as directory_store
from server.phi import Keyring
from server.storage.tables import programs, safety_plans

# The emergency-plan consent carries the patient's release to contact the support person.
RELEASE_KIND = "emergency_plan"


def plan_context(row_id: str) -> str:
    """The sealing context of one safety plan version."""
    return f"safety_plans/{row_id}"


@dataclass(frozen=True, slots=True)
class PlanVersion:
    """One stored version of a patient's safety plan."""

    version: int
    plan: SafetyPlan
    recorded_by: str | None
    recorded_at: dt.datetime


async def save_plan(
    conn: AsyncConnection,
    keyring: Keyring,
    patient_id: str,
    plan: SafetyPlan,
    by: str | None,
    now: dt.datetime,
) -> int:
    """Store a new version of the patient's plan (earlier versions stay); return it."""
    last = await conn.scalar(
        sa.select(sa.func.max(safety_plans.c.version)).where(
            safety_plans.c.patient_id == patient_id
        )
    )
    version = int(last or 0) + 1
    row_id = new_id()
    await conn.execute(
        safety_plans.insert().values(
            id=row_id,
            patient_id=patient_id,
            version=version,
            plan_enc=keyring.seal(
                json.dumps(plan.to_json(), sort_keys=True), context=plan_context(row_id)
            ),
            recorded_by=by,
            recorded_at=now,
        )
    )
    return version


async def current_plan(
    conn: AsyncConnection, keyring: Keyring, patient_id: str
) -> PlanVersion | None:
    """The newest version of the patient's plan, or None."""
    row = (
        await conn.execute(
            sa.select(safety_plans)
            .where(safety_plans.c.patient_id == patient_id)
            .order_by(safety_plans.c.version.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    plan = parse_plan(json.loads(keyring.open(row.plan_enc, context=plan_context(row.id))))
    return PlanVersion(row.version, plan, row.recorded_by, row.recorded_at)


@dataclass(frozen=True, slots=True)
class SafetyData:
    """What the people on an event need to reach and protect the patient."""

    patient: dict[str, Any]  # the intake record, opened
    check: dict[str, Any] | None  # this session's safety check answers, opened
    checked_at: dt.datetime | None
    plan: PlanVersion | None
    local: LocalEmergencyInfo
    # The day (program's calendar) the patient withdrew the emergency-plan consent, if that
    # withdrawal stands: the support-person release ends with it, whatever intake says.
    release_withdrawn_on: dt.date | None = None

    @property
    def callback_phone(self) -> str | None:
        """The phone the patient gave for this session."""
        return None if self.check is None else self.check.get("callback_phone") or None

    @property
    def address(self) -> str | None:
        """Where the patient said they are for this session."""
        return None if self.check is None else self.check.get("address") or None

    @property
    def support_person(self) -> dict[str, Any] | None:
        """Name, relationship and phone, or None."""
        found = self.patient.get("support_person")
        return found if isinstance(found, dict) else None

    @property
    def support_released(self) -> bool:
        """True when the patient's signed release allows contacting the support person."""
        return (
            bool(self.patient.get("support_release"))
            and self.support_person is not None
            and self.release_withdrawn_on is None
        )

    @property
    def support_unavailable(self) -> str | None:
        """Why the support person may not be called now (no PHI in it), or None."""
        if self.support_person is None:
            return "no support person on file"
        if self.release_withdrawn_on is not None:
            return f"release withdrawn {self.release_withdrawn_on.isoformat()}"
        if not self.support_released:
            return "no release on file"
        return None

    @property
    def psap_phone(self) -> str | None:
        """The most specific local emergency dispatch line for the confirmed location."""
        primary = self.local.primary
        return None if primary is None else primary.entry.psap_phone


async def load(
    conn: AsyncConnection,
    keyring: Keyring,
    patient_id: str,
    session_id: str,
    today: dt.date,
    *,
    stale_days: int,
) -> SafetyData:
    """Gather the patient's safety data for this session (the caller audits the read)."""
    patient = await catalog_patients.get_patient(conn, keyring, patient_id) or {}
    row = await checkin_safety.safety_check_for(conn, session_id, patient_id)
    check = None
    if row is not None:
        check = json.loads(keyring.open(row.answers_enc, context=f"safety_checks/{row.id}"))
    local = await directory_store.resolve(
        conn,
        None if row is None else row.zip,
        None if row is None else row.county,
        today,
        stale_days=stale_days,
    )
    plan = await current_plan(conn, keyring, patient_id)
    withdrawn = await release_withdrawn_on(conn, keyring, patient_id, patient.get("program_id"))
    return SafetyData(patient, check, None if row is None else row.at, plan, local, withdrawn)


async def release_withdrawn_on(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, program_id: str | None
) -> dt.date | None:
    """The day the emergency-plan consent was withdrawn, unless it has been given again."""
    events = await consent_ledger.events_of(conn, keyring, patient_id)
    if RELEASE_KIND in current_consents(events):
        return None
    withdrawals = [e for e in events if e["kind"] == RELEASE_KIND and e["event"] == "revoked"]
    if not withdrawals:
        return None
    at: dt.datetime = withdrawals[-1]["recorded_at"]
    time_zone = await conn.scalar(
        sa.select(programs.c.time_zone).where(programs.c.id == program_id)
    )
    return at.astimezone(zone(time_zone)).date() if time_zone else at.date()
