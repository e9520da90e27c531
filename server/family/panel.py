"""The family-sessions part of a patient's page: sessions, the release, support links."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.schedule import zone
from server.family import links
from server.phi import Keyring

NO_RELEASE = (
    "The patient has not signed the family session release. They are asked for it when "
    "they open their link for the family session, or you can record their verbal consent "
    "(“Family session release”) under Consents."
)
NO_PHONE = "The intake record has no support person with a phone number; add one first."


async def family_context(
    conn: AsyncConnection,
    keyring: Keyring,
    patient: dict[str, Any],
    now: dt.datetime,
) -> dict[str, Any]:
    """What the patient page shows about family sessions, and why issuing may be disabled.

    `patient` is the already-opened (and audited) intake record.
    """
    sessions = await links.family_sessions_of(conn, patient["id"], now)
    release = await links.current_release(conn, keyring, patient["id"])
    person = patient.get("support_person") or {}
    digits = "".join(ch for ch in str(person.get("phone") or "") if ch.isdigit())
    blocked = None
    if release is None:
        blocked = NO_RELEASE
    elif len(digits) < 4:
        blocked = NO_PHONE
    issued = await links.links_of_patient(conn, patient["id"])
    tz = zone(patient["time_zone"])
    return {
        "sessions": [
            {"id": row.id, "local": row.starts_at.astimezone(tz), "state": row.state}
            for row in sessions
        ],
        "release": release,
        "blocked": blocked,
        "links": [{"row": row, "state": links.link_state(row, now)} for row in issued[:10]],
    }
