"""Who may enter a session's room, in which role: checked before any page or socket opens."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from aiohttp_session import get_session
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.consent import Missing
from rooms.model import Identity, RoomRole
from server.accounts import joinlinks
from server.accounts.auth import current_staff
from server.accounts.patient_entry import DEVICE, LINK
from server.accounts.permissions import Role
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import patients as catalog_patients
from server.checkin.store import checkin_complete, staff_status
from server.consent import ledger as consent_ledger
from server.consent.templates import missing_for, session_terms
from server.family import links as family_links
from server.family.session import current_support_link
from server.homework.store import staff_badge as homework_badge
from server.mood import store as mood_store
from server.storage.tables import (
    appointments,
    family_sessions,
    group_members,
    groups,
    sessions,
)
from server.techcheck import store as techcheck_store


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """The session a room belongs to."""

    id: str
    program_id: str
    title: str
    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    state: str
    time_zone: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A person allowed into a room, and as what."""

    identity: Identity
    role: RoomRole
    name: str
    room: RoomInfo
    staff_info: dict[str, Any] | None = None
    link_id: str | None = None  # the join link a patient came in by
    support_link_id: str | None = None  # the link a support person came in by


class CheckinRequired(web.HTTPForbidden):
    """The gate: this session's safety check (and any screening due) comes first."""

    def __init__(self) -> None:
        super().__init__(reason="check-in required before joining")


class SupportConsentRequired(web.HTTPForbidden):
    """The gate: a support person gives their own consent before the family session."""

    def __init__(self) -> None:
        super().__init__(reason="the support person's consent is required before joining")


class ConsentRequired(web.HTTPForbidden):
    """The gate: a patient's required consents are missing, revoked or out of date."""

    def __init__(self, missing: list[Missing]) -> None:
        kinds = ", ".join(m.kind for m in missing)
        super().__init__(reason=f"consent required before joining: {kinds}")
        self.missing = missing


async def room_info(conn: AsyncConnection, session_id: str) -> tuple[RoomInfo, Any] | None:
    """The session and its owner row (group or appointment), or None."""
    row = (
        await conn.execute(
            sa.select(
                sessions,
                groups.c.name.label("group_name"),
                groups.c.lead_clinician_id,
                groups.c.cofacilitator_id,
                groups.c.time_zone.label("group_tz"),
                appointments.c.clinician_id,
                appointments.c.patient_id.label("appointment_patient_id"),
                family_sessions.c.session_id.label("family_session_id"),
            )
            .outerjoin(groups, groups.c.id == sessions.c.group_id)
            .outerjoin(appointments, appointments.c.id == sessions.c.appointment_id)
            .outerjoin(family_sessions, family_sessions.c.session_id == sessions.c.id)
            .where(sessions.c.id == session_id)
        )
    ).first()
    if row is None:
        return None
    family = row.family_session_id is not None
    info = RoomInfo(
        id=row.id,
        program_id=row.program_id,
        title=row.group_name or ("Family session" if family else "One-on-one session"),
        kind="family" if family else row.kind,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        state=row.state,
        time_zone=row.group_tz or "America/Los_Angeles",
    )
    return info, row


def staff_role(row: Any, program_id: str, staff_id: str, role: Role) -> RoomRole | None:
    """The room role of a staff member for a session row, or None."""
    if staff_id in (row.lead_clinician_id, row.clinician_id):
        return RoomRole.HOST
    if staff_id == row.cofacilitator_id:
        return RoomRole.COHOST
    if role is Role.SUPERVISOR and row.program_id == program_id:
        return RoomRole.OBSERVER
    return None


async def _patient_in_session(conn: AsyncConnection, row: Any, patient_id: str) -> bool:
    if row.kind == "individual":
        return bool(row.appointment_patient_id == patient_id)
    member = await conn.execute(
        sa.select(group_members.c.patient_id).where(
            group_members.c.group_id == row.group_id,
            group_members.c.patient_id == patient_id,
            group_members.c.left_on.is_(None),
        )
    )
    return member.first() is not None


async def resolve(request: web.Request, session_id: str) -> Entry:
    """The caller's way into this room, or an HTTP refusal."""
    async with request.app[ENGINE].connect() as conn:
        found = await room_info(conn, session_id)
        if found is None:
            raise web.HTTPNotFound(reason="There is no such session.")
        info, row = found
        if info.state in ("ended", "cancelled"):
            raise web.HTTPGone(reason="This session has ended.")
        who = await current_staff(request)
        if who is not None:
            role = staff_role(row, who.program_id, who.id, who.role)
            if role is None:
                raise web.HTTPForbidden(reason="You are not one of this session's staff.")
            return Entry(Identity("staff", who.id), role, who.display_name, info)
        link = await current_link(request, conn)
        if link is None:
            support = await current_support_link(request, conn)
            if support is not None:
                return await _support_entry(request, conn, info, support)
            raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
        if link.session_id not in (None, session_id) or not await _patient_in_session(
            conn, row, link.patient_id
        ):
            raise web.HTTPForbidden(reason="Your link is for a different session.")
        terms = await session_terms(conn, session_id)
        assert terms is not None
        missing = await missing_for(conn, request.app[KEYRING], link.patient_id, terms)
        if missing:
            raise ConsentRequired(missing)
        window = dt.timedelta(minutes=request.app[SETTINGS].checkin_location_window_minutes)
        now = request.app[CLOCK].now()
        if not await checkin_complete(conn, session_id, link.patient_id, now, window):
            raise CheckinRequired()
        names = await catalog_patients.display_names(conn, request.app[KEYRING], [link.patient_id])
        current = await consent_ledger.standing(conn, request.app[KEYRING], link.patient_id)
        checkin = await staff_status(conn, request.app[KEYRING], session_id, link.patient_id)
        tech = (await techcheck_store.latest_for(conn, [link.patient_id])).get(link.patient_id)
        homework = await homework_badge(conn, session_id, link.patient_id)
        mood = await mood_store.since_last_session(
            conn, request.app[KEYRING], link.patient_id, session_id, now
        )
    consents = [
        {
            "kind": kind,
            "version": current[kind].version,
            "at": current[kind].consented_at.isoformat(),
            "method": current[kind].method,
        }
        for kind in (*terms.required, *terms.offered)
        if kind in current
    ]
    return Entry(
        Identity("patient", link.patient_id),
        RoomRole.PARTICIPANT,
        names[link.patient_id],
        info,
        {
            "consents": consents,
            "checkin": checkin,
            "techcheck": tech.staff_info() if tech is not None else None,
            "homework": homework,
            "mood": mood.to_json(),
        },
        link_id=link.id,
    )


async def _support_entry(
    request: web.Request, conn: AsyncConnection, info: RoomInfo, support: Any
) -> Entry:
    """A support person's way into their family session: the patient's release still
    current, their own consent given; they are named by relationship, never by name."""
    if support.session_id != info.id or info.kind != "family":
        raise web.HTTPForbidden(reason="Your link is for a different session.")
    keyring = request.app[KEYRING]
    if await family_links.current_release(conn, keyring, support.patient_id) is None:
        raise web.HTTPForbidden(reason="This family session is not open to you any more.")
    if not await family_links.participant_consent_current(conn, support.consent_seq):
        raise SupportConsentRequired()
    person = family_links.support_person(keyring, support.patient_id, support.support_person_enc)
    return Entry(
        Identity("support", support.id),
        RoomRole.SUPPORT_PERSON,
        person.label if person else "Support person",
        info,
        support_link_id=support.id,
    )


async def current_link(request: web.Request, conn: AsyncConnection) -> Any:
    """The patient's join link for this browser, if it is active and on this device."""
    session = await get_session(request)
    link_id = session.get(LINK)
    if not isinstance(link_id, str):
        return None
    link = await joinlinks.get(conn, link_id)
    if link is None or link.device_id != session.get(DEVICE):
        return None
    if joinlinks.link_state(link, request.app[CLOCK].now()) != "active":
        return None
    return link


async def patient_session(request: web.Request) -> tuple[Any, str]:
    """The patient's active link and the session it is for now (a standing link: the next)."""
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
        if link is None:
            raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
        session_id = link.session_id
        if session_id is None:
            upcoming = await joinlinks.patient_sessions(conn, link.patient_id, now)
            if not upcoming:
                raise web.HTTPNotFound(reason="There is no session for you right now.")
            session_id = upcoming[0].session_id
    return link, session_id
