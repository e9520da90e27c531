"""Aftercare plans in storage: each save is a new sealed version; the newest is current."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from care.aftercare import AftercarePlan, from_json
from server.catalog.store import new_id
from server.phi import Keyring
from server.storage.tables import aftercare_plans


def plan_context(row_id: str) -> str:
    """The sealing context of one aftercare plan version."""
    return f"aftercare_plans/{row_id}"


@dataclass(frozen=True, slots=True)
class AftercareVersion:
    """One stored version of a patient's aftercare plan."""

    version: int
    plan: AftercarePlan
    recorded_by: str | None
    recorded_at: dt.datetime


async def save_plan(
    conn: AsyncConnection,
    keyring: Keyring,
    patient_id: str,
    plan: AftercarePlan,
    by: str | None,
    now: dt.datetime,
) -> int:
    """Store a new version of the patient's plan (earlier versions stay); return it."""
    last = await conn.scalar(
        sa.select(sa.func.max(aftercare_plans.c.version)).where(
            aftercare_plans.c.patient_id == patient_id
        )
    )
    version = int(last or 0) + 1
    row_id = new_id()
    await conn.execute(
        aftercare_plans.insert().values(
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
) -> AftercareVersion | None:
    """The newest version of the patient's aftercare plan, or None."""
    row = (
        await conn.execute(
            sa.select(aftercare_plans)
            .where(aftercare_plans.c.patient_id == patient_id)
            .order_by(aftercare_plans.c.version.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    plan = from_json(json.loads(keyring.open(row.plan_enc, context=plan_context(row.id))))
    return AftercareVersion(row.version, plan, row.recorded_by, row.recorded_at)
