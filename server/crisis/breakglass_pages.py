"""Break-glass: a supervisor not on an event opens its safety panel with a reason.

The opening is audited loudly and reviewed later (CLINICAL.md section 8); the review lists
every opening in the last 90 days.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.accounts.auth import (
    audit_event,
    identity,
    read_form,
    requires,
)
from server.accounts.permissions import Action, Role
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.crisis import breakglass
from server.crisis.api import can_see
from server.crisis.event_access import back, break_glass_form, load_event
from server.logs import get_logger
from server.render import render

log = get_logger(__name__)

REVIEW_DAYS = 90


@requires(Action.CRISIS_BREAK_GLASS, phi=True)
async def break_glass(request: web.Request) -> web.Response:
    """A supervisor not on the event opens its safety panel, with a reason (audited)."""
    form = await read_form(request)
    who = identity(request)
    now = request.app[CLOCK].now()
    raw = str(form.get("reason", ""))
    async with request.app[ENGINE].begin() as conn:
        event = await load_event(conn, request.match_info["event_id"])
        if who.role is not Role.ADMIN and who.program_id != event.program_id:
            raise web.HTTPForbidden(reason="This event belongs to another program.")
        if await can_see(conn, who, event, now):
            raise back(event.id, "safety")
    try:
        reason = breakglass.check_reason(raw)
    except breakglass.ReasonInvalid as exc:
        return await break_glass_form(request, event, {"reason": str(exc)}, raw[:600])
    window = dt.timedelta(minutes=request.app[SETTINGS].break_glass_minutes)
    async with request.app[ENGINE].begin() as conn:
        grant_id = await breakglass.grant(
            conn,
            request.app[KEYRING],
            staff_id=who.id,
            event_id=event.id,
            program_id=event.program_id,
            patient_id=event.patient_id,
            reason=reason,
            now=now,
            window=window,
        )
        # The reason stays sealed in break_glass; the audit row names the grant, not the words.
        await audit_event(
            request,
            conn,
            "safety.break_glass",
            target_type="patient",
            target_id=event.patient_id,
            detail={
                "event_id": event.id,
                "grant_id": grant_id,
                "minutes": request.app[SETTINGS].break_glass_minutes,
            },
        )
    log.warning("safety.break_glass", event_id=event.id, user_id=who.id, grant_id=grant_id)
    raise back(event.id, "safety")


@requires(Action.CRISIS_BREAK_GLASS, phi=True)
async def break_glass_review(request: web.Request) -> web.Response:
    """After-the-fact review: every break-glass opening in the last 90 days."""
    who = identity(request)
    now = request.app[CLOCK].now()
    scope = None if who.role is Role.ADMIN else [who.program_id]
    async with request.app[ENGINE].begin() as conn:
        found = await breakglass.uses(
            conn,
            request.app[KEYRING],
            scope,
            now - dt.timedelta(days=REVIEW_DAYS),
            with_reasons=True,
        )
        await audit_event(request, conn, "safety.break_glass_review", detail={"count": len(found)})
    if request.query.get("format") == "json":
        rows = [
            {**{k: v for k, v in row.items() if k != "reason"}, "at": row["at"].isoformat()}
            | {"expires_at": row["expires_at"].isoformat()}
            for row in found
        ]
        return web.json_response({"uses": rows})
    return await render(
        request, "crisis_break_glass_review.html", {"uses": found, "days": REVIEW_DAYS}
    )
