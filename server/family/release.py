"""The patient's side of family sessions: who their support person is, and the release
that lets them join (signed here ahead of time, or on the way into the family session)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from rooms.schedule import zone
from server.accounts.auth import csrf_token, read_form
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.client_address import client_address
from server.consent import ledger as consent_ledger
from server.consent.pages import render_markdown
from server.consent.templates import document_for, latest, session_terms
from server.family import links
from server.logs import get_logger
from server.render import render
from server.roomsocket.access import current_link
from server.storage.tables import patients

log = get_logger(__name__)
PRESENTED = "release_presented"


async def _patient_link(request: web.Request, conn: Any) -> Any:
    link = await current_link(request, conn)
    if link is None:
        raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
    return link


async def _view(request: web.Request, error: str | None = None) -> web.Response:
    now = request.app[CLOCK].now()
    keyring = request.app[KEYRING]
    async with request.app[ENGINE].begin() as conn:
        link = await _patient_link(request, conn)
        family = await links.family_sessions_of(conn, link.patient_id, now)
        release = await links.current_release(conn, keyring, link.patient_id)
        sealed = await conn.scalar(
            patients.select()
            .with_only_columns(patients.c.support_person_enc)
            .where(patients.c.id == link.patient_id)
        )
        person = links.support_person(keyring, link.patient_id, sealed)
        document = None
        if release is None and family:
            terms = await session_terms(conn, family[0].id)
            template = await latest(conn, links.RELEASE)
            assert terms is not None and template is not None
            document = await document_for(conn, template, terms.values)
            (await get_session(request))[PRESENTED] = [template.id, now.isoformat()]
    tz = zone(link.patient_time_zone)
    context = {
        "sessions": [row.starts_at.astimezone(tz) for row in family],
        "release": release,
        "person": person,
        "document": document,
        "body_html": render_markdown(document.body) if document else "",
        "csrf": await csrf_token(request),
        "program_phone": link.program_phone,
        "error": error,
        "patient_page": True,
    }
    return await render(request, "family_release.html", context, status=400 if error else 200)


async def release_page(request: web.Request) -> web.Response:
    """The patient's family sessions, their support person and the release's state."""
    return await _view(request)


async def release_submit(request: web.Request) -> web.StreamResponse:
    """The patient signs the release for their support person to join family sessions."""
    form = await read_form(request)
    now = request.app[CLOCK].now()
    keyring = request.app[KEYRING]
    presented = (await get_session(request)).get(PRESENTED)
    async with request.app[ENGINE].begin() as conn:
        link = await _patient_link(request, conn)
        family = await links.family_sessions_of(conn, link.patient_id, now)
        template = await latest(conn, links.RELEASE)
        if not family or not presented or template is None or template.id != presented[0]:
            raise web.HTTPSeeOther("/family/release")
        terms = await session_terms(conn, family[0].id)
        assert terms is not None
        document = await document_for(conn, template, terms.values)
        ticked = all(form.get(f"ack_{i}") == "on" for i in range(len(document.acknowledgements)))
        name = form.get("full_name", "").strip()
        if not ticked:
            error: str | None = "Please tick each statement to agree."
        elif not 2 <= len(name) <= 120:
            error = "Please type your full name to sign."
        else:
            error = None
            current = await consent_ledger.standing(conn, keyring, link.patient_id)
            superseded = current.get(links.RELEASE)
            await consent_ledger.append(
                conn,
                keyring,
                patient_id=link.patient_id,
                kind=links.RELEASE,
                event="consented",
                template_id=template.id,
                template_version=template.version,
                text_sha256=document.sha256(),
                language=template.language,
                session_id=terms.session_id,
                presented_at=dt.datetime.fromisoformat(presented[1]),
                consented_at=now,
                method="e_signature",
                signer_role="patient",
                signature=name,
                supersedes=superseded.seq if superseded else None,
                context={
                    "user_agent": request.headers.get("User-Agent", "")[:300],
                    "address": client_address(request),
                },
                recorded_at=now,
            )
    if error is not None:
        return await _view(request, error)
    log.info("consent.recorded", patient_id=link.patient_id)
    raise web.HTTPSeeOther("/family/release")


def add_routes(app: web.Application) -> None:
    """Register the patient's family-session release page."""
    app.router.add_get("/family/release", release_page)
    app.router.add_post("/family/release", release_submit)
