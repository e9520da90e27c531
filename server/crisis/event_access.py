"""Who may open a crisis event: the staff on it, or a supervisor through break-glass.

Only the people on the event (`crisis_api.can_see`) open it; a supervisor of its program
who is not on it is offered the break-glass form instead of a plain refusal.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis import ledger
from server.accounts.auth import (
    StaffIdentity,
    audit_event,
    csrf_token,
    identity,
)
from server.accounts.permissions import Action, Role, allowed
from server.appkeys import CLOCK, ENGINE, SETTINGS
from server.crisis import breakglass
from server.crisis import store as crisis_store
from server.crisis.api import can_see
from server.render import render

MEMBER = "member"
BREAK_GLASS = "break_glass"


async def access_to(
    conn: AsyncConnection, who: StaffIdentity, event: ledger.Event, now: dt.datetime
) -> tuple[str | None, dt.datetime | None]:
    """("member" | "break_glass" | None, when a break-glass grant ends)."""
    if await can_see(conn, who, event, now):
        return MEMBER, None
    if allowed(who.role, Action.CRISIS_BREAK_GLASS) and (
        who.role is Role.ADMIN or who.program_id == event.program_id
    ):
        until = await breakglass.active(conn, who.id, event.id, now)
        if until is not None:
            return BREAK_GLASS, until
    return None, None


async def load_event(conn: AsyncConnection, event_id: str, *, lock: bool = False) -> ledger.Event:
    """The event, or 404."""
    try:
        return await crisis_store.get_event(conn, event_id, lock=lock)
    except crisis_store.EventNotFoundError:
        raise web.HTTPNotFound(reason="There is no such crisis event.") from None


async def refuse(request: web.Request, event: ledger.Event) -> web.Response:
    """403: the break-glass form for a supervisor of the program, a plain refusal otherwise."""
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        await audit_event(
            request,
            conn,
            "crisis.access_refused",
            target_type="crisis_event",
            target_id=event.id,
            outcome="denied",
        )
    may_break = allowed(who.role, Action.CRISIS_BREAK_GLASS) and (
        who.role is Role.ADMIN or who.program_id == event.program_id
    )
    if not may_break:
        raise web.HTTPForbidden(reason="Only the staff on this crisis event may open it.")
    return await break_glass_form(request, event, {}, "")


async def break_glass_form(
    request: web.Request, event: ledger.Event, errors: dict[str, str], reason: str
) -> web.Response:
    """The break-glass form (403; 422 when it comes back with errors)."""
    context = {
        "event": event,
        "errors": errors,
        "reason": reason,
        "csrf": await csrf_token(request),
        "minutes": request.app[SETTINGS].break_glass_minutes,
        "min_reason": breakglass.MIN_REASON,
        "max_reason": breakglass.MAX_REASON,
    }
    return await render(request, "crisis_break_glass.html", context, 422 if errors else 403)


async def acting(request: web.Request, conn: AsyncConnection) -> ledger.Event:
    """The event, locked, when the caller is on it (or holds a break-glass grant)."""
    event = await load_event(conn, request.match_info["event_id"], lock=True)
    access, _until = await access_to(conn, identity(request), event, request.app[CLOCK].now())
    if access is None:
        raise web.HTTPForbidden(reason="Only the staff on this crisis event may act on it.")
    return event


def back(event_id: str, anchor: str = "timeline") -> web.HTTPSeeOther:
    """A redirect to the event page, at `anchor`."""
    return web.HTTPSeeOther(f"/crisis/events/{event_id}#{anchor}")
