"""Re-encrypting PHI under the current key, in small batches, while servers keep running."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.accounts.store import totp_context
from server.catalog.patients import PATIENT_PHI, patient_context
from server.consent.ledger import SEALED, context_for
from server.crisis.oncall import webhook_secret_context, webhook_url_context
from server.crisis.safety_data import plan_context
from server.crisis.timeline import step_context
from server.homework.store import answers_context, instructions_context
from server.outcomes.store import plan_context as aftercare_context
from server.phi import Keyring
from server.storage.tables import (
    aftercare_plans,
    break_glass,
    checkin_progress,
    consent_events,
    crisis_requests,
    crisis_settings,
    crisis_steps,
    homework_assignments,
    mood_entries,
    patients,
    safety_checks,
    safety_plans,
    screenings,
    staff,
)


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A column of sealed values and how its context is built from the row id."""

    table: sa.Table
    column: str
    context: Callable[[Any], str]
    key: str = "id"


def _patient(field: str) -> SealedColumn:
    return SealedColumn(patients, f"{field}_enc", lambda rid: patient_context(rid, field))


# Every sealed column in the schema; a new one must be added here to be rotated.
SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    *(_patient(field) for field in PATIENT_PHI),
    SealedColumn(staff, "totp_secret_enc", totp_context),
    *(
        SealedColumn(consent_events, f"{field}_enc", partial(context_for, field=field), "seq")
        for field in SEALED
    ),
    SealedColumn(crisis_requests, "detail_enc", lambda rid: f"crisis_requests/{rid}"),
    SealedColumn(checkin_progress, "answers_enc", lambda rid: f"checkin_progress/{rid}"),
    SealedColumn(safety_checks, "answers_enc", lambda rid: f"safety_checks/{rid}"),
    SealedColumn(screenings, "result_enc", lambda rid: f"screenings/{rid}"),
    SealedColumn(safety_plans, "plan_enc", plan_context),
    SealedColumn(break_glass, "reason_enc", lambda rid: f"break_glass/{rid}"),
    SealedColumn(crisis_steps, "payload_enc", step_context, "seq"),
    SealedColumn(crisis_settings, "webhook_url_enc", webhook_url_context, "program_id"),
    SealedColumn(crisis_settings, "webhook_secret_enc", webhook_secret_context, "program_id"),
    SealedColumn(aftercare_plans, "plan_enc", aftercare_context),
    SealedColumn(homework_assignments, "instructions_enc", instructions_context),
    SealedColumn(homework_assignments, "answers_enc", answers_context),
    SealedColumn(mood_entries, "entry_enc", lambda rid: f"mood_entries/{rid}"),
)


async def reencrypt(engine: AsyncEngine, keyring: Keyring, batch_size: int = 200) -> int:
    """Re-seal every value not under the current key; return how many were rewritten."""
    prefix = f"v1:{keyring.current}:"
    rewritten = 0
    for sealed in SEALED_COLUMNS:
        table = sealed.table
        column = table.c[sealed.column]
        key = table.c[sealed.key]
        last_id: Any = "" if isinstance(key.type, sa.String) else 0
        while True:
            # One short transaction per batch: readers and writers are never held up long.
            async with engine.begin() as conn:
                rows = (
                    await conn.execute(
                        sa.select(key, column)
                        .where(key > last_id, column.is_not(None))
                        .order_by(key)
                        .limit(batch_size)
                    )
                ).all()
                for row_id, value in rows:
                    if value.startswith(prefix):
                        continue
                    context = sealed.context(row_id)
                    fresh = keyring.seal(keyring.open(value, context=context), context=context)
                    # Only replace the value that was read, so a concurrent update wins.
                    await conn.execute(
                        table.update()
                        .where(key == row_id, column == value)
                        .values({sealed.column: fresh})
                    )
                    rewritten += 1
            if len(rows) < batch_size:
                break
            last_id = rows[-1][0]
    return rewritten
