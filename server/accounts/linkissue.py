"""Issuing a join link on a staff member's request: caseload check, settings, audit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from server.accounts import joinlinks
from server.accounts.auth import audit_event, identity
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, SETTINGS


async def issue_for(
    request: web.Request, conn: Any, patient_id: str, session_id: str | None
) -> joinlinks.IssuedLink:
    """Issue a link for a patient on the caller's caseload; CatalogError for a bad session."""
    who = identity(request)
    settings = request.app[SETTINGS]
    if not await patient_visible(conn, who, patient_id):
        raise web.HTTPNotFound(reason="There is no such patient on your caseload.")
    link = await joinlinks.issue(
        conn,
        patient_id=patient_id,
        session_id=session_id,
        issued_by=who.id,
        now=request.app[CLOCK].now(),
        grace=dt.timedelta(minutes=settings.join_link_grace_minutes),
        standing_for=dt.timedelta(days=settings.standing_link_days),
    )
    await audit_event(
        request,
        conn,
        "join_link.issued",
        target_type="patient",
        target_id=patient_id,
        detail={"join_link_id": link.id, "standing": link.session_id is None},
    )
    return link


def link_url(request: web.Request, link: joinlinks.IssuedLink) -> str:
    """The URL to hand the patient (shown once; only its hash is stored)."""
    return f"{request.app[SETTINGS].public_url}/j/{link.token}"
