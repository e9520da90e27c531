"""Support-person links: bound to one family session, hashed, expiring, one device at a time.

A link is issued only while the patient's release (`family_release`) is current, and opens
the room only while it still is: a withdrawn release closes every link at once.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.consent import Standing
from server.accounts.store import new_token, token_hash
from server.catalog.patients import patient_context
from server.catalog.store import new_id
from server.consent import ledger as consent_ledger
from server.consent.templates import minimum_versions
from server.phi import Keyring
from server.storage.tables import (
    appointments,
    consent_events,
    family_sessions,
    patients,
    programs,
    sessions,
    support_links,
)

MAX_PHONE_FAILURES = 5
RELEASE = "family_release"
PARTICIPANT = "family_participant"


class SupportLinkError(ValueError):
    """Why a support-person link cannot be issued (shown to the clinician as is)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuedSupportLink:
    """A new link: the token is shown once and never stored."""

    id: str
    token: str
    expires_at: dt.datetime
    session_id: str


@dataclass(frozen=True, slots=True)
class SupportPerson:
    """The support person on the patient's record (sealed there; opened only when needed)."""

    name: str
    relationship: str
    phone: str

    @property
    def phone_digits(self) -> str:
        """The phone number's digits only."""
        return "".join(ch for ch in self.phone if ch.isdigit())

    @property
    def label(self) -> str:
        """How the support person is shown in rooms and attendance: never by name."""
        relationship = self.relationship.strip()
        return f"Support person ({relationship})" if relationship else "Support person"


def support_person(keyring: Keyring, patient_id: str, sealed: str | None) -> SupportPerson | None:
    """Open the support person from a patient's sealed `support_person_enc`."""
    plain = keyring.open_optional(sealed, context=patient_context(patient_id, "support_person"))
    if not plain:
        return None
    data = json.loads(plain)
    if not isinstance(data, dict):
        return None
    return SupportPerson(
        str(data.get("name") or ""),
        str(data.get("relationship") or ""),
        str(data.get("phone") or ""),
    )


async def family_session(conn: AsyncConnection, session_id: str) -> Any:
    """A family session with its patient and clinician, or None (not one, or no such)."""
    return (
        await conn.execute(
            sa.select(
                sessions,
                appointments.c.patient_id,
                appointments.c.clinician_id,
            )
            .join(family_sessions, family_sessions.c.session_id == sessions.c.id)
            .join(appointments, appointments.c.id == sessions.c.appointment_id)
            .where(sessions.c.id == session_id)
        )
    ).first()


async def family_sessions_of(
    conn: AsyncConnection, patient_id: str, after: dt.datetime
) -> list[Any]:
    """The patient's family sessions that have not ended, soonest first."""
    return list(
        (
            await conn.execute(
                sa.select(sessions, appointments.c.clinician_id)
                .join(family_sessions, family_sessions.c.session_id == sessions.c.id)
                .join(appointments, appointments.c.id == sessions.c.appointment_id)
                .where(
                    appointments.c.patient_id == patient_id,
                    sessions.c.ends_at > after,
                    sessions.c.state.not_in(("ended", "cancelled")),
                )
                .order_by(sessions.c.starts_at)
            )
        ).all()
    )


async def current_release(
    conn: AsyncConnection, keyring: Keyring, patient_id: str
) -> Standing | None:
    """The patient's current release for their support person, if signed and up to date."""
    standing = (await consent_ledger.standing(conn, keyring, patient_id)).get(RELEASE)
    if standing is None:
        return None
    if standing.version < (await minimum_versions(conn)).get(RELEASE, 1):
        return None
    return standing


async def participant_consent_current(conn: AsyncConnection, consent_seq: int | None) -> bool:
    """Whether the support person's own consent is on record in the current version."""
    if consent_seq is None:
        return False
    version = await conn.scalar(
        sa.select(consent_events.c.template_version).where(
            consent_events.c.seq == consent_seq,
            consent_events.c.kind == PARTICIPANT,
            consent_events.c.event == "consented",
        )
    )
    if version is None:
        return False
    return int(version) >= (await minimum_versions(conn)).get(PARTICIPANT, 1)


async def why_not_issue(
    conn: AsyncConnection, keyring: Keyring, patient: Any, session_id: str, now: dt.datetime
) -> tuple[Any, Standing]:
    """The family session and release a link may be issued under, or SupportLinkError."""
    row = await family_session(conn, session_id)
    if row is None:
        is_session = await conn.scalar(sa.select(sessions.c.id).where(sessions.c.id == session_id))
        if is_session is not None:
            raise SupportLinkError(
                "not_family", "support-person links are only for family sessions"
            )
        raise SupportLinkError("no_session", "there is no such session")
    if row.patient_id != patient.id:
        raise SupportLinkError("no_session", "that family session is not this patient's")
    if row.state in ("ended", "cancelled") or row.ends_at <= now:
        raise SupportLinkError("over", "that family session is over")
    release = await current_release(conn, keyring, patient.id)
    if release is None:
        raise SupportLinkError(
            "no_release",
            "the patient has not signed a current release for their support person",
        )
    person = support_person(keyring, patient.id, patient.support_person_enc)
    if person is None or len(person.phone_digits) < 4:
        raise SupportLinkError(
            "no_support_person", "there is no support person with a phone number on file"
        )
    return row, release


async def issue(
    conn: AsyncConnection,
    *,
    session: Any,
    patient_id: str,
    release_seq: int,
    issued_by: str,
    now: dt.datetime,
    grace: dt.timedelta,
) -> IssuedSupportLink:
    """Issue a link for one family session, expiring at its end plus `grace`."""
    token = new_token()
    link_id = new_id()
    expires_at = session.ends_at + grace
    await conn.execute(
        support_links.insert().values(
            id=link_id,
            session_id=session.id,
            patient_id=patient_id,
            release_seq=release_seq,
            token_hash=token_hash(token),
            issued_by=issued_by,
            expires_at=expires_at,
            created_at=now,
        )
    )
    return IssuedSupportLink(link_id, token, expires_at, session.id)


def _with_program() -> sa.Select[Any]:
    return (
        sa.select(
            support_links,
            patients.c.support_person_enc,
            patients.c.program_id,
            patients.c.time_zone.label("patient_time_zone"),
            programs.c.phone.label("program_phone"),
            programs.c.name.label("program_name"),
        )
        .join(patients, patients.c.id == support_links.c.patient_id)
        .join(programs, programs.c.id == patients.c.program_id)
    )


async def find(conn: AsyncConnection, token: str) -> Any:
    """The link a token opens, with its program's name and phone, or None."""
    return (
        await conn.execute(_with_program().where(support_links.c.token_hash == token_hash(token)))
    ).first()


async def get(conn: AsyncConnection, link_id: str) -> Any:
    """A link by id, with its program's name and phone, or None."""
    return (await conn.execute(_with_program().where(support_links.c.id == link_id))).first()


def link_state(row: Any, now: dt.datetime) -> str:
    """ "active", "revoked" or "expired"."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= now:
        return "expired"
    return "active"


def _open(link_id: str, now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        support_links.c.id == link_id,
        support_links.c.revoked_at.is_(None),
        support_links.c.expires_at > now,
    )


async def bind_device(conn: AsyncConnection, link_id: str, now: dt.datetime) -> str | None:
    """Make a new device the link's only device; None when the link closed meanwhile."""
    device_id = secrets.token_hex(16)
    bound = await conn.execute(
        support_links.update()
        .where(_open(link_id, now))
        .values(device_id=device_id, last_used_at=now)
    )
    return device_id if bound.rowcount == 1 else None


async def record_phone_failure(conn: AsyncConnection, link_id: str, now: dt.datetime) -> str:
    """Count a wrong phone check; "failed", "revoked" (at the limit) or "closed".

    One conditional update, like the patient's date-of-birth check: answers arriving
    together queue on the row, the fifth revokes the link, later ones find it closed.
    """
    counted = await conn.execute(
        support_links.update()
        .where(_open(link_id, now), support_links.c.phone_failures < MAX_PHONE_FAILURES)
        .values(phone_failures=support_links.c.phone_failures + 1)
    )
    if counted.rowcount != 1:
        return "closed"
    failures = await conn.scalar(
        sa.select(support_links.c.phone_failures).where(support_links.c.id == link_id)
    )
    if (failures or 0) < MAX_PHONE_FAILURES:
        return "failed"
    await conn.execute(support_links.update().where(_open(link_id, now)).values(revoked_at=now))
    return "revoked"


async def record_consent(conn: AsyncConnection, link_id: str, seq: int) -> None:
    """Note the support person's own consent on their link."""
    await conn.execute(
        support_links.update().where(support_links.c.id == link_id).values(consent_seq=seq)
    )


async def revoke(conn: AsyncConnection, link_id: str, by: str | None, now: dt.datetime) -> bool:
    """Revoke one link; False when it was already closed."""
    done = await conn.execute(
        support_links.update()
        .where(support_links.c.id == link_id, support_links.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=by)
    )
    return done.rowcount == 1


async def revoke_all_of_patient(
    conn: AsyncConnection, patient_id: str, by: str | None, now: dt.datetime
) -> list[str]:
    """Revoke every open link of a patient (the release was withdrawn); their ids."""
    ids = list(
        await conn.scalars(
            sa.select(support_links.c.id).where(
                support_links.c.patient_id == patient_id, support_links.c.revoked_at.is_(None)
            )
        )
    )
    if ids:
        await conn.execute(
            support_links.update()
            .where(support_links.c.id.in_(ids))
            .values(revoked_at=now, revoked_by=by)
        )
    return ids


async def links_of_patient(conn: AsyncConnection, patient_id: str) -> list[Any]:
    """Every support-person link of a patient, newest first."""
    return list(
        (
            await conn.execute(
                sa.select(support_links)
                .where(support_links.c.patient_id == patient_id)
                .order_by(support_links.c.created_at.desc())
            )
        ).all()
    )


async def labels(conn: AsyncConnection, keyring: Keyring, link_ids: list[str]) -> dict[str, str]:
    """Per link id, "Support person (relationship)": how attendance shows them."""
    if not link_ids:
        return {}
    rows = await conn.execute(
        sa.select(
            support_links.c.id,
            patients.c.id.label("patient_id"),
            patients.c.support_person_enc,
        )
        .join(patients, patients.c.id == support_links.c.patient_id)
        .where(support_links.c.id.in_(link_ids))
    )
    found = {}
    for row in rows:
        person = support_person(keyring, row.patient_id, row.support_person_enc)
        found[row.id] = person.label if person else "Support person"
    return found
