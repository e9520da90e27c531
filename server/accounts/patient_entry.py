"""The patient's way in: a join link, an optional date-of-birth check, the checked-in page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from aiohttp_session import get_session, new_session

from rooms.schedule import zone
from server import audit
from server.accounts import joinlinks
from server.accounts import linksockets as link_sockets
from server.accounts.auth import PATIENT_LINK, csrf_token, public, read_form
from server.accounts.auth import audit_event as audit_request
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.catalog.patients import patient_context
from server.logs import get_logger
from server.render import render

log = get_logger(__name__)
LINK = PATIENT_LINK
DEVICE = "patient_device"
DOB_OK = "dob_ok_for"


async def _gone(request: web.Request, state: str, row: Any) -> web.Response:
    return await render(
        request,
        "join_gone.html",
        {
            "state": state,
            "program_phone": row.program_phone,
            "program_name": row.program_name,
            "patient_page": True,
        },
        status=410,
    )


async def _invalid(request: web.Request) -> web.Response:
    context = {"state": "invalid", "patient_page": True}
    return await render(request, "join_gone.html", context, status=404)


async def _enter(request: web.Request, row: Any) -> web.StreamResponse:
    """Bind this device to the link and start the patient's session."""
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        bound = await joinlinks.bind_device(conn, row.id, now)
        if bound is not None:
            device_id, moved = bound
            await audit_request(
                request,
                conn,
                "join_link.used",
                actor=audit.Actor("patient", row.patient_id),
                target_type="join_link",
                target_id=row.id,
                detail={"moved_from_other_device": moved},
            )
    if bound is None:
        # Revoked (or expired) after it was read: answered as a closed link.
        return await _gone(request, "expired" if row.expires_at <= now else "revoked", row)
    session = await new_session(request)
    session[LINK] = row.id
    session[DEVICE] = device_id
    log.info("join_link.used", patient_id=row.patient_id)
    raise web.HTTPSeeOther("/join")


@public
async def link_landing(request: web.Request) -> web.StreamResponse:
    """Open a join link: check it, ask for the date of birth if the program wants it."""
    async with request.app[ENGINE].connect() as conn:
        row = await joinlinks.find(conn, request.match_info["token"])
    if row is None:
        return await _invalid(request)
    state = joinlinks.link_state(row, request.app[CLOCK].now())
    if state != "active":
        return await _gone(request, state, row)
    session = await get_session(request)
    if row.join_requires_dob and session.get(DOB_OK) != row.id:
        context = {
            "csrf": await csrf_token(request),
            "program_name": row.program_name,
            "program_phone": row.program_phone,
            "patient_page": True,
        }
        return await render(request, "join_dob.html", context)
    return await _enter(request, row)


@public
async def link_dob(request: web.Request) -> web.StreamResponse:
    """Check the date of birth the patient typed against the intake record."""
    form = await read_form(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        row = await joinlinks.find(conn, request.match_info["token"])
    if row is None:
        return await _invalid(request)
    state = joinlinks.link_state(row, now)
    if state != "active":
        return await _gone(request, state, row)
    typed = form.get("date_of_birth", "").strip()
    stored = request.app[KEYRING].open_optional(
        row.date_of_birth_enc, context=patient_context(row.patient_id, "date_of_birth")
    )
    if stored is not None and _same_date(typed, stored):
        (await get_session(request))[DOB_OK] = row.id
        return await _enter(request, row)
    async with request.app[ENGINE].begin() as conn:
        counted = await joinlinks.record_dob_failure(conn, row.id, now)
        if counted != "closed":
            await audit_request(
                request,
                conn,
                "join_link.dob_check",
                actor=audit.Actor("patient", row.patient_id),
                target_type="join_link",
                target_id=row.id,
                outcome=counted,
            )
    if counted == "revoked":
        await link_sockets.link_revoked(request.app, row.id)
    if counted != "failed":
        return await _gone(request, "revoked", row)
    context = {
        "csrf": await csrf_token(request),
        "program_name": row.program_name,
        "program_phone": row.program_phone,
        "patient_page": True,
        "error": "That date does not match our records. Check it and try again.",
    }
    return await render(request, "join_dob.html", context, status=400)


def _same_date(typed: str, stored: str) -> bool:
    try:
        return dt.date.fromisoformat(typed) == dt.date.fromisoformat(stored)
    except ValueError:
        return False


@public
async def checked_in(request: web.Request) -> web.Response:
    """Where a patient lands: the session they are checked in for."""
    session = await get_session(request)
    link_id = session.get(LINK)
    if not isinstance(link_id, str):
        context = {"state": "no_link", "patient_page": True}
        return await render(request, "join_gone.html", context, status=401)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        row = await joinlinks.get(conn, link_id)
        if row is None:
            return await _invalid(request)
        if row.device_id != session.get(DEVICE):
            # A second device opened the link: this one is signed out and told why.
            session.invalidate()
            return await render(
                request,
                "join_gone.html",
                {"state": "moved", "program_phone": row.program_phone, "patient_page": True},
                status=409,
            )
        state = joinlinks.link_state(row, now)
        if state != "active":
            session.invalidate()
            return await _gone(request, state, row)
        if row.session_id is not None:
            slot = await joinlinks.session_slot(conn, row.session_id)
        else:
            upcoming = await joinlinks.patient_sessions(conn, row.patient_id, now)
            slot = upcoming[0] if upcoming else None
    local = slot.starts_at.astimezone(zone(row.patient_time_zone)) if slot else None
    return await render(
        request,
        "join_checked_in.html",
        {
            "slot": slot,
            "starts_local": local,
            "program_name": row.program_name,
            "program_phone": row.program_phone,
        },
    )


def add_routes(app: web.Application) -> None:
    """Register the patient's entry pages."""
    app.router.add_get("/j/{token}", link_landing)
    app.router.add_post("/j/{token}", link_dob)
    app.router.add_get("/join", checked_in)
