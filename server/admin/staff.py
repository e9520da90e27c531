"""Admin pages for staff accounts: invite, disable, enable, reset MFA, invite again."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.accounts import livesockets as staff_sockets
from server.accounts import store as accounts
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.accounts.scope import program_scope
from server.admin.forms import (
    Errors,
    validate,
    visible_programs,
)
from server.appkeys import CLOCK, ENGINE, SETTINGS
from server.catalog import store as catalog
from server.catalog.schemas import InviteIn
from server.render import render


@requires(Action.STAFF_MANAGE)
async def staff_page(request: web.Request) -> web.Response:
    """Staff accounts, and a form to invite one."""
    return await _staff_view(request, {}, {})


async def _staff_view(
    request: web.Request,
    values: dict[str, Any],
    errors: Errors,
    status: int = 200,
    invite_url: str | None = None,
) -> web.Response:
    async with request.app[ENGINE].connect() as conn:
        members = await catalog.list_staff(conn, program_scope(identity(request)))
    context = {
        "staff": members,
        "programs": await visible_programs(request),
        "values": values,
        "errors": errors,
        "invite_url": invite_url,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_staff.html", context, status)


@requires(Action.STAFF_MANAGE)
async def staff_invite(request: web.Request) -> web.Response:
    """Create an account and show its one-time invitation link."""
    form = await read_form(request)
    data = {
        "program_id": form.get("program_id", ""),
        "email": form.get("email", "").strip(),
        "display_name": form.get("display_name", ""),
        "role": form.get("role", ""),
        "licence": form.get("licence", "").strip() or None,
    }
    body, errors = validate(InviteIn, data)
    if body is None:
        return await _staff_view(request, data, errors, status=400)
    now = request.app[CLOCK].now()
    try:
        async with request.app[ENGINE].begin() as conn:
            record = await catalog.create_staff(conn, body, accounts.UNUSABLE_PASSWORD, now)
            token = await accounts.create_invite(conn, record["id"], now)
            await audit_event(
                request, conn, "staff.invited", target_type="staff", target_id=record["id"]
            )
    except catalog.CatalogError as exc:
        return await _staff_view(request, data, {exc.field: exc.reason}, status=400)
    url = f"{request.app[SETTINGS].public_url}/invite/{token}"
    return await _staff_view(request, {}, {}, status=201, invite_url=url)


async def _staff_action(request: web.Request, action: str) -> web.StreamResponse:
    await read_form(request)
    staff_id = request.match_info["staff_id"]
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        row = await accounts.staff_by_id(conn, staff_id)
        if row is None or (program_scope(who) and row.program_id != who.program_id):
            raise web.HTTPNotFound(reason="There is no such staff account.")
        if staff_id == who.id and action in ("disable", "reset_mfa"):
            raise web.HTTPBadRequest(reason="You cannot do that to your own account.")
        invite_url = None
        if action in ("disable", "enable"):
            await catalog.set_staff_disabled(conn, staff_id, action == "disable")
        elif action == "reset_mfa":
            await accounts.reset_totp(conn, staff_id)
        else:
            token = await accounts.create_invite(conn, staff_id, now)
            invite_url = f"{request.app[SETTINGS].public_url}/invite/{token}"
        await audit_event(request, conn, f"staff.{action}", target_type="staff", target_id=staff_id)
    if action == "disable":
        await staff_sockets.sessions_ended(request.app, staff_id, staff_sockets.DISABLED)
    elif action == "reset_mfa":
        await staff_sockets.sessions_ended(request.app, staff_id, staff_sockets.RESET)
    if invite_url:
        return await _staff_view(request, {}, {}, status=201, invite_url=invite_url)
    raise web.HTTPSeeOther("/admin/staff")


@requires(Action.STAFF_MANAGE)
async def staff_disable(request: web.Request) -> web.StreamResponse:
    """Disable an account."""
    return await _staff_action(request, "disable")


@requires(Action.STAFF_MANAGE)
async def staff_enable(request: web.Request) -> web.StreamResponse:
    """Enable an account again."""
    return await _staff_action(request, "enable")


@requires(Action.STAFF_MANAGE)
async def staff_reset_mfa(request: web.Request) -> web.StreamResponse:
    """Remove an account's second factor; it enrols again at next sign-in."""
    return await _staff_action(request, "reset_mfa")


@requires(Action.STAFF_MANAGE)
async def staff_reinvite(request: web.Request) -> web.StreamResponse:
    """A fresh invitation link (to reset a forgotten password)."""
    return await _staff_action(request, "invite")
