"""Safety checks in storage: where the patient is and who is with them, sealed per row.

The address's ZIP code and county stay readable so the local emergency directory can be
looked up without opening the answers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.catalog.store import new_id
from server.phi import Keyring
from server.storage.tables import safety_checks

# A ZIP code ends a US address; a five-digit number anywhere else is a street number
# ("15991 Red Hill Ave, Tustin") or a suite, never the ZIP.
_ZIP_AT_END = re.compile(
    r"\b(\d{5})(?:-\d{4})?[\s,.]*(?:USA|US|U\.S\.A?\.?|United States(?: of America)?)?[\s.]*$",
    re.IGNORECASE,
)
ZIP = re.compile(r"\d{5}")


def zip_at_end(address: str) -> str | None:
    """The five-digit ZIP code that ends an address, if it ends with one."""
    found = _ZIP_AT_END.search(address.strip())
    return found.group(1) if found else None


def location_opens_at(starts_at: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """When "where are you right now" may first be answered for a session starting then."""
    return starts_at - window


def open_answers(keyring: Keyring, row: Any) -> dict[str, Any]:
    """A safety check's answers, opened."""
    return dict(json.loads(keyring.open(row.answers_enc, context=f"safety_checks/{row.id}")))


async def safety_check_for(
    conn: AsyncConnection, session_id: str, patient_id: str, since: dt.datetime | None = None
) -> Any:
    """This session's latest safety check (taken at `since` or later, if given), or None."""
    query = sa.select(safety_checks).where(
        safety_checks.c.session_id == session_id, safety_checks.c.patient_id == patient_id
    )
    if since is not None:
        query = query.where(safety_checks.c.at >= since)
    return (await conn.execute(query.order_by(safety_checks.c.at.desc()).limit(1))).first()


async def previous_safety(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, session_id: str
) -> dict[str, Any] | None:
    """The patient's most recent safety check from another session, opened (for "same as
    last time", which the patient must confirm explicitly)."""
    row = (
        await conn.execute(
            sa.select(safety_checks)
            .where(
                safety_checks.c.patient_id == patient_id, safety_checks.c.session_id != session_id
            )
            .order_by(safety_checks.c.at.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return open_answers(keyring, row)


async def save_safety_check(
    conn: AsyncConnection,
    keyring: Keyring,
    *,
    session_id: str,
    patient_id: str,
    answers: dict[str, Any],
    now: dt.datetime,
    recorded_by: str | None,
) -> str:
    """Store a safety check; the address's ZIP and county stay readable for the directory."""
    check_id = new_id()
    await conn.execute(
        safety_checks.insert().values(
            id=check_id,
            session_id=session_id,
            patient_id=patient_id,
            answers_enc=keyring.seal(
                json.dumps(answers, sort_keys=True), context=f"safety_checks/{check_id}"
            ),
            zip=answers.get("zip") or zip_at_end(answers["address"]),
            county=answers.get("county") or None,
            private_space=bool(answers["private_space"]),
            recorded_by=recorded_by,
            at=now,
        )
    )
    return check_id
