"""Consent templates in storage, what a session requires, and a patient's gate status."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

import web as web_assets
from rooms.consent import (
    KINDS,
    Document,
    Missing,
    answered_versions,
    current_consents,
    gate,
    offered_kinds,
    parse_document,
    required_kinds,
    unanswered_offers,
)
from server.catalog.store import new_id
from server.consent import ledger as consent_ledger
from server.phi import Keyring
from server.storage.tables import (
    appointments,
    consent_templates,
    consent_texts,
    family_sessions,
    groups,
    programs,
    sessions,
    staff,
)

SHIPPED = Path(web_assets.__file__).with_name("consent") / "en"
LANGUAGE = "en"


async def ensure_shipped(conn: AsyncConnection, now: dt.datetime) -> int:
    """Install version 1 of each shipped document that is not in the database yet."""
    added = 0
    for kind in KINDS:
        exists = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(consent_templates)
            .where(consent_templates.c.kind == kind, consent_templates.c.language == LANGUAGE)
        )
        if exists:
            continue
        source = (SHIPPED / f"{kind}.md").read_text(encoding="utf-8")
        parse_document(source)
        await conn.execute(
            consent_templates.insert().values(
                id=new_id(),
                kind=kind,
                language=LANGUAGE,
                version=1,
                source=source,
                source_sha256=hashlib.sha256(source.encode()).hexdigest(),
                effective_on=now.date(),
                requires_reconsent=True,
                published_at=now,
            )
        )
        added += 1
    return added


async def latest(conn: AsyncConnection, kind: str) -> Any:
    """The newest version of a kind."""
    return (
        await conn.execute(
            sa.select(consent_templates)
            .where(consent_templates.c.kind == kind, consent_templates.c.language == LANGUAGE)
            .order_by(consent_templates.c.version.desc())
            .limit(1)
        )
    ).first()


async def all_versions(conn: AsyncConnection) -> list[Any]:
    """Every version of every kind, newest first within a kind."""
    return list(
        (
            await conn.execute(
                sa.select(consent_templates).order_by(
                    consent_templates.c.kind, consent_templates.c.version.desc()
                )
            )
        ).all()
    )


async def minimum_versions(conn: AsyncConnection) -> dict[str, int]:
    """Per kind, the newest version that requires re-consent: older consents no longer do."""
    rows = await conn.execute(
        sa.select(consent_templates.c.kind, sa.func.max(consent_templates.c.version))
        .where(consent_templates.c.requires_reconsent.is_(True))
        .group_by(consent_templates.c.kind)
    )
    return {kind: int(version) for kind, version in rows}


async def publish(
    conn: AsyncConnection,
    *,
    kind: str,
    source: str,
    requires_reconsent: bool,
    effective_on: dt.date,
    by: str,
    now: dt.datetime,
) -> Any:
    """Publish a new version of a kind (the old ones stay readable)."""
    parse_document(source)
    current = await latest(conn, kind)
    version = 1 if current is None else int(current.version) + 1
    template_id = new_id()
    await conn.execute(
        consent_templates.insert().values(
            id=template_id,
            kind=kind,
            language=LANGUAGE,
            version=version,
            source=source,
            source_sha256=hashlib.sha256(source.encode()).hexdigest(),
            effective_on=effective_on,
            requires_reconsent=requires_reconsent,
            published_by=by,
            published_at=now,
        )
    )
    return await latest(conn, kind)


@dataclass(frozen=True, slots=True)
class SessionTerms:
    """What a session needs from a patient before they may enter, and how to fill it in.

    `offered` are asked for too, but a patient who declines them still enters.
    """

    session_id: str
    required: tuple[str, ...]
    values: dict[str, str]
    offered: tuple[str, ...] = ()


async def session_terms(conn: AsyncConnection, session_id: str) -> SessionTerms | None:
    """The consents a session requires and the program and clinician details they show."""
    row = (
        await conn.execute(
            sa.select(
                sessions.c.id,
                sessions.c.kind,
                programs.c.name.label("program_name"),
                programs.c.phone.label("program_phone"),
                programs.c.kind.label("program_kind"),
                programs.c.consent_group,
                programs.c.consent_individual,
                programs.c.recording_enabled,
                sa.func.coalesce(groups.c.lead_clinician_id, appointments.c.clinician_id).label(
                    "clinician_id"
                ),
                family_sessions.c.session_id.label("family_session_id"),
            )
            .join(programs, programs.c.id == sessions.c.program_id)
            .outerjoin(groups, groups.c.id == sessions.c.group_id)
            .outerjoin(appointments, appointments.c.id == sessions.c.appointment_id)
            .outerjoin(family_sessions, family_sessions.c.session_id == sessions.c.id)
            .where(sessions.c.id == session_id)
        )
    ).first()
    if row is None:
        return None
    clinician = (
        await conn.execute(
            sa.select(staff.c.display_name, staff.c.licence).where(staff.c.id == row.clinician_id)
        )
    ).first()
    configured = row.consent_group if row.kind == "group" else row.consent_individual
    kind = "family" if row.family_session_id is not None else row.kind
    required = required_kinds(kind, configured)
    offered = offered_kinds(row.program_kind, configured, row.recording_enabled)
    values = {
        "program_name": row.program_name,
        "program_phone": row.program_phone,
        "clinician_name": clinician.display_name if clinician else "your clinician",
        "clinician_licence": (clinician.licence if clinician and clinician.licence else "licensed"),
    }
    return SessionTerms(row.id, required, values, offered)


async def document_for(conn: AsyncConnection, template: Any, values: dict[str, str]) -> Document:
    """The filled document a patient sees; its exact text is kept by hash."""
    document = parse_document(template.source).filled(values)
    digest = document.sha256()
    known = await conn.scalar(
        sa.select(consent_texts.c.sha256).where(consent_texts.c.sha256 == digest)
    )
    if known is None:
        # Patients of one group open the same text at the same moment (the evening's first
        # step), so two may both find it missing: the second insert is ignored, not an error.
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(consent_texts)
            .values(sha256=digest, text=document.text())
            .on_conflict_do_nothing(index_elements=[consent_texts.c.sha256])
        )
    return document


async def missing_for(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, terms: SessionTerms
) -> list[Missing]:
    """What the gate still needs from this patient for this session."""
    current = await consent_ledger.standing(conn, keyring, patient_id)
    return gate(terms.required, current, await minimum_versions(conn))


async def owed_for(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, terms: SessionTerms
) -> list[Missing]:
    """Every consent step still to show: the gate's first, then unanswered optional ones."""
    events = await consent_ledger.events_of(conn, keyring, patient_id)
    minimum = await minimum_versions(conn)
    missing = gate(terms.required, current_consents(events), minimum)
    return missing + unanswered_offers(terms.offered, answered_versions(events), minimum)


async def offers_pending(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, session_id: str
) -> bool:
    """True when the session offers an optional consent the patient has not answered yet."""
    terms = await session_terms(conn, session_id)
    if terms is None or not terms.offered:
        return False
    events = await consent_ledger.events_of(conn, keyring, patient_id)
    minimum = await minimum_versions(conn)
    return bool(unanswered_offers(terms.offered, answered_versions(events), minimum))
