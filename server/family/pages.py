"""Family-session pages: the clinician issues a support-person link; the support person
confirms who they are, gives their own consent and joins the room (media and chat only)."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

from aiohttp import web
from aiohttp_session import get_session, new_session

from rooms.consent import KIND_TITLES
from server import audit
from server.accounts import linksockets as link_sockets
from server.accounts.auth import audit_event, csrf_token, identity, public, read_form, requires
from server.accounts.permissions import Action
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.caseload.appointments import schedule_from_form
from server.caseload.pages import _patient_context, local_time
from server.catalog import patients as catalog_patients
from server.client_address import client_address
from server.consent import ledger as consent_ledger
from server.consent.pages import render_markdown
from server.consent.templates import document_for, latest, session_terms
from server.family import links
from server.family.session import SUPPORT_DEVICE, SUPPORT_LINK, current_support_link
from server.logs import get_logger
from server.render import render
from server.roomsocket import placement
from server.roomsocket.access import SupportConsentRequired, resolve
from server.roomsocket.pages import _media_context

log = get_logger(__name__)
PRESENTED = "support_consent_presented"
PHONE_DIGITS = 4


def _actor(row: Any) -> audit.Actor:
    return audit.Actor("support_person", row.id)


# Staff: issue and revoke -----------------------------------------------------------------


FAMILY_TEMPLATE = "family-50"
FAMILY_MINUTES = 50


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def schedule_family_session(request: web.Request) -> web.StreamResponse:
    """Schedule a 50-minute family session (the patient, the clinician, the support person)."""
    appointment_id = await schedule_from_form(
        request,
        kind="family",
        template=FAMILY_TEMPLATE,
        minutes=FAMILY_MINUTES,
        what="family session",
    )
    log.info("family.session_scheduled", appointment_id=appointment_id)
    raise web.HTTPSeeOther(f"/patients/{request.match_info['patient_id']}#family-sessions")


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def issue_support_link(request: web.Request) -> web.Response:
    """Issue a support-person link for one family session and show it once."""
    form = await read_form(request)
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    session_id = form.get("session_id", "").strip()
    now = request.app[CLOCK].now()
    grace = dt.timedelta(minutes=request.app[SETTINGS].join_link_grace_minutes)
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason="There is no such patient on your caseload.")
        if not session_id:
            raise web.HTTPBadRequest(reason="Choose the family session the link is for.")
        patient = await catalog_patients.get_patient_row(conn, patient_id)
        try:
            session, release = await links.why_not_issue(
                conn, request.app[KEYRING], patient, session_id, now
            )
        except links.SupportLinkError as exc:
            raise web.HTTPBadRequest(
                reason=f"Could not issue a support-person link: {exc.reason}."
            ) from None
        link = await links.issue(
            conn,
            session=session,
            patient_id=patient_id,
            release_seq=release.seq,
            issued_by=who.id,
            now=now,
            grace=grace,
        )
        # Issuing opened the sealed support person (their phone) to check it is on file.
        await audit_event(
            request,
            conn,
            "patient.phi_read",
            target_type="patient",
            target_id=patient_id,
            detail={"fields": "support_person"},
        )
        await audit_event(
            request,
            conn,
            "support_link.issued",
            target_type="patient",
            target_id=patient_id,
            detail={"support_link_id": link.id, "session_id": session_id},
        )
    log.info("support_link.issued", patient_id=patient_id)
    context = await _patient_context(request, patient_id)
    context["new_support_link"] = {
        "url": f"{request.app[SETTINGS].public_url}/s/{link.token}",
        "expires_local": local_time(link.expires_at, context["patient"]["time_zone"]),
    }
    return await render(request, "patient.html", context, status=201)


@requires(Action.JOIN_LINKS_MANAGE)
async def revoke_support_link(request: web.Request) -> web.StreamResponse:
    """Revoke a support-person link; a room it opened closes at once."""
    await read_form(request)
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        row = await links.get(conn, request.match_info["link_id"])
        if row is None or not await patient_visible(conn, who, row.patient_id):
            raise web.HTTPNotFound(reason="There is no such link.")
        await links.revoke(conn, row.id, who.id, now)
        await audit_event(
            request, conn, "support_link.revoked", target_type="support_link", target_id=row.id
        )
    await link_sockets.link_revoked(request.app, row.id)
    raise web.HTTPSeeOther(f"/patients/{row.patient_id}")


# The support person ------------------------------------------------------------------------


async def _gone(request: web.Request, state: str, row: Any, status: int = 410) -> web.Response:
    context = {"state": state}
    if row is not None:
        context |= {"program_phone": row.program_phone, "program_name": row.program_name}
    return await render(request, "join_gone.html", context, status=status)


async def _closed(request: web.Request, conn: Any, row: Any) -> str | None:
    """Why a link cannot be used now ("expired", "revoked"), or None."""
    now = request.app[CLOCK].now()
    state = links.link_state(row, now)
    if state != "active":
        return state
    session = await links.family_session(conn, row.session_id)
    if session is None or session.state in ("ended", "cancelled"):
        return "expired"
    if await links.current_release(conn, request.app[KEYRING], row.patient_id) is None:
        return "revoked"  # the patient withdrew the release
    return None


async def _phone_form(request: web.Request, row: Any, error: str | None = None) -> web.Response:
    context = {
        "csrf": await csrf_token(request),
        "program_name": row.program_name,
        "program_phone": row.program_phone,
        "error": error,
    }
    return await render(request, "support_phone.html", context, status=400 if error else 200)


@public
async def support_landing(request: web.Request) -> web.StreamResponse:
    """Open a support-person link: ask for the last digits of their phone on file."""
    async with request.app[ENGINE].connect() as conn:
        row = await links.find(conn, request.match_info["token"])
        if row is None:
            return await _gone(request, "invalid", None, 404)
        closed = await _closed(request, conn, row)
    if closed is not None:
        return await _gone(request, closed, row)
    return await _phone_form(request, row)


@public
async def support_check(request: web.Request) -> web.StreamResponse:
    """Check the phone digits against the support person on the patient's record."""
    form = await read_form(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        row = await links.find(conn, request.match_info["token"])
        if row is None:
            return await _gone(request, "invalid", None, 404)
        closed = await _closed(request, conn, row)
    if closed is not None:
        return await _gone(request, closed, row)
    typed = "".join(ch for ch in form.get("phone_last4", "") if ch.isdigit())
    if len(typed) != PHONE_DIGITS or len(form.get("phone_last4", "").strip()) > 12:
        # Not an answer yet: asked again, not counted.
        return await _phone_form(request, row, "Type the last 4 digits of your phone number.")
    person = links.support_person(request.app[KEYRING], row.patient_id, row.support_person_enc)
    expected = person.phone_digits[-PHONE_DIGITS:] if person else ""
    if len(expected) == PHONE_DIGITS and hmac.compare_digest(expected, typed):
        return await _enter(request, row)
    async with request.app[ENGINE].begin() as conn:
        counted = await links.record_phone_failure(conn, row.id, now)
        if counted != "closed":
            await audit_event(
                request,
                conn,
                "support_link.phone_check",
                actor=_actor(row),
                target_type="support_link",
                target_id=row.id,
                outcome=counted,
            )
    if counted == "revoked":
        await link_sockets.link_revoked(request.app, row.id)
    if counted != "failed":
        return await _gone(request, "revoked", row)
    return await _phone_form(
        request, row, "Those digits do not match the phone number we have. Try again."
    )


async def _enter(request: web.Request, row: Any) -> web.StreamResponse:
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        device_id = await links.bind_device(conn, row.id, now)
        if device_id is not None:
            await audit_event(
                request,
                conn,
                "support_link.used",
                actor=_actor(row),
                target_type="support_link",
                target_id=row.id,
            )
    if device_id is None:
        return await _gone(request, "expired" if row.expires_at <= now else "revoked", row)
    session = await new_session(request)
    session[SUPPORT_LINK] = row.id
    session[SUPPORT_DEVICE] = device_id
    log.info("support_link.used")
    raise web.HTTPSeeOther("/family")


async def _current(request: web.Request, conn: Any) -> Any:
    """The support person's link for this browser, usable now, or a refusal."""
    row = await current_support_link(request, conn)
    if row is None:
        session = await get_session(request)
        if isinstance(session.get(SUPPORT_LINK), str):
            moved = await links.get(conn, session[SUPPORT_LINK])
            if moved is not None and moved.device_id != session.get(SUPPORT_DEVICE):
                session.invalidate()
                raise web.HTTPConflict(reason="Your link was opened on another device.")
        raise web.HTTPUnauthorized(reason="Open the link the program sent you.")
    if await _closed(request, conn, row) is not None:
        raise web.HTTPGone(reason="This link no longer works.")
    return row


async def support_home(request: web.Request) -> web.Response:
    """The support person's page: their consent first, then the way into the session."""
    async with request.app[ENGINE].begin() as conn:
        row = await _current(request, conn)
        session = await links.family_session(conn, row.session_id)
        if not await links.participant_consent_current(conn, row.consent_seq):
            terms = await session_terms(conn, row.session_id)
            template = await latest(conn, links.PARTICIPANT)
            assert terms is not None and template is not None
            document = await document_for(conn, template, terms.values)
            browser = await get_session(request)
            browser[PRESENTED] = [template.id, request.app[CLOCK].now().isoformat()]
            return await _consent_page(request, row, document, None)
    starts = local_time(session.starts_at, row.patient_time_zone)
    context = {"starts_local": starts, "program_phone": row.program_phone}
    return await render(request, "support_home.html", context)


async def _consent_page(
    request: web.Request, row: Any, document: Any, error: str | None
) -> web.Response:
    context = {
        "document": document,
        "body_html": render_markdown(document.body),
        "csrf": await csrf_token(request),
        "program_phone": row.program_phone,
        "error": error,
        "title": KIND_TITLES[links.PARTICIPANT],
    }
    return await render(request, "support_consent.html", context, status=400 if error else 200)


async def support_consent(request: web.Request) -> web.StreamResponse:
    """Record the support person's own consent (telehealth, confidentiality, no recording)."""
    form = await read_form(request)
    now = request.app[CLOCK].now()
    keyring = request.app[KEYRING]
    browser = await get_session(request)
    presented = browser.get(PRESENTED)
    async with request.app[ENGINE].begin() as conn:
        row = await _current(request, conn)
        template = await latest(conn, links.PARTICIPANT)
        if not presented or template is None or template.id != presented[0]:
            raise web.HTTPSeeOther("/family")  # not shown yet, or a new version meanwhile
        terms = await session_terms(conn, row.session_id)
        assert terms is not None
        document = await document_for(conn, template, terms.values)
        ticked = all(form.get(f"ack_{i}") == "on" for i in range(len(document.acknowledgements)))
        name = form.get("full_name", "").strip()
        error = None
        if not ticked:
            error = "Please tick each statement to agree."
        elif not 2 <= len(name) <= 120:
            error = "Please type your full name to sign."
        if error is None:
            seq = await consent_ledger.append(
                conn,
                keyring,
                patient_id=row.patient_id,
                kind=links.PARTICIPANT,
                event="consented",
                template_id=template.id,
                template_version=template.version,
                text_sha256=document.sha256(),
                language=template.language,
                session_id=row.session_id,
                presented_at=dt.datetime.fromisoformat(presented[1]),
                consented_at=now,
                method="e_signature",
                signer_role="support_person",
                signature=name,
                context={
                    "user_agent": request.headers.get("User-Agent", "")[:300],
                    "address": client_address(request),
                    "support_link_id": row.id,
                },
                recorded_at=now,
            )
            await links.record_consent(conn, row.id, seq)
            await audit_event(
                request,
                conn,
                "consent.support_person_signed",
                actor=_actor(row),
                target_type="support_link",
                target_id=row.id,
                detail={"consent_seq": seq},
            )
    if error is not None:
        return await _consent_page(request, row, document, error)
    log.info("consent.support_person_recorded")
    raise web.HTTPSeeOther("/family")


async def support_room(request: web.Request) -> web.Response:
    """The family session's room for the support person: video, audio and chat only."""
    async with request.app[ENGINE].connect() as conn:
        row = await _current(request, conn)
    try:
        entry = await resolve(request, row.session_id)
    except SupportConsentRequired:
        raise web.HTTPSeeOther("/family") from None
    await placement.redirect_page(request, entry.room.id)
    context = {
        "entry": entry,
        "starts_local": local_time(entry.room.starts_at, entry.room.time_zone),
        "ws_path": placement.ws_path(request.app, entry.room.id),
        "program_phone": row.program_phone,
        **_media_context(request, entry),
    }
    return await render(request, "family_room.html", context)


def add_routes(app: web.Application) -> None:
    """Register the family-session pages."""
    app.router.add_post("/patients/{patient_id}/family-sessions", schedule_family_session)
    app.router.add_post("/patients/{patient_id}/support-links", issue_support_link)
    app.router.add_post("/support-links/{link_id}/revoke", revoke_support_link)
    app.router.add_get("/s/{token}", support_landing)
    app.router.add_post("/s/{token}", support_check)
    app.router.add_get("/family", support_home)
    app.router.add_post("/family/consent", support_consent)
    app.router.add_get("/family/room", support_room)
