"""Admin pages for programs: list, create, edit (kind, time zone, consent, screening)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict

from rooms.consent import FAMILY_KINDS, KIND_TITLES, KINDS, OPTIONAL
from server.accounts.auth import audit_event, csrf_token, read_form, requires
from server.accounts.permissions import Action
from server.admin.forms import (
    TIME_ZONES,
    Errors,
    cadence_from,
    validate,
    visible_programs,
)
from server.appkeys import CLOCK, ENGINE
from server.catalog import store as catalog
from server.catalog.schemas import ProgramIn
from server.render import render


def _program_data(form: MultiDict[str]) -> dict[str, Any]:
    def kinds(prefix: str) -> list[str] | None:
        if form.get(f"{prefix}_custom") != "on":
            return None
        return form.getall(prefix, [])

    return {
        "name": form.get("name", ""),
        "kind": form.get("kind", ""),
        "time_zone": form.get("time_zone", ""),
        "phone": form.get("phone", ""),
        "join_link_mode": form.get("join_link_mode", ""),
        "join_requires_dob": form.get("join_requires_dob") == "on",
        "consent_group": kinds("consent_group"),
        "consent_individual": kinds("consent_individual"),
        "recording_enabled": form.get("recording_enabled") == "on",
        "screening_cadence": cadence_from(form),
        "severe_scores": severe_from(form),
    }


def severe_from(form: MultiDict[str]) -> dict[str, Any] | None:
    """Severe totals from a form; blank fields keep the default (None if all are)."""
    found: dict[str, Any] = {}
    for name in ("phq9", "gad7"):
        raw = form.get(f"severe_scores_{name}", "").strip()
        if raw:
            found[name] = int(raw) if raw.isdigit() else raw
    return found or None


@requires(Action.PROGRAMS_MANAGE)
async def programs_page(request: web.Request) -> web.Response:
    """Every program, and a form to add one."""
    return await _programs_view(request, {}, {})


async def _programs_view(
    request: web.Request, values: dict[str, Any], errors: Errors, status: int = 200
) -> web.Response:
    context = {
        "programs": await visible_programs(request),
        "values": values,
        "errors": errors,
        "time_zones": TIME_ZONES,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_programs.html", context, status)


@requires(Action.PROGRAMS_MANAGE)
async def program_create(request: web.Request) -> web.StreamResponse:
    """Add a program."""
    data = _program_data(await read_form(request))
    body, errors = validate(ProgramIn, data)
    if body is not None:
        try:
            async with request.app[ENGINE].begin() as conn:
                record = await catalog.create_program(conn, body, request.app[CLOCK].now())
                await audit_event(
                    request, conn, "program.created", target_type="program", target_id=record["id"]
                )
        except catalog.CatalogError as exc:
            errors = {exc.field: exc.reason}
        else:
            raise web.HTTPSeeOther("/admin/programs")
    return await _programs_view(request, data, errors, status=400)


@requires(Action.PROGRAMS_MANAGE)
async def program_page(request: web.Request) -> web.Response:
    """One program's settings."""
    program = await _program(request)
    return await _program_view(request, program, program, {})


async def _program(request: web.Request) -> dict[str, Any]:
    found = [
        p for p in await visible_programs(request) if p["id"] == request.match_info["program_id"]
    ]
    if not found:
        raise web.HTTPNotFound(reason="There is no such program.")
    return found[0]


async def _program_view(
    request: web.Request,
    program: dict[str, Any],
    values: dict[str, Any],
    errors: Errors,
    status: int = 200,
) -> web.Response:
    context = {
        "program": program,
        "values": values,
        "errors": errors,
        "time_zones": TIME_ZONES,
        "consent_kinds": [k for k in KINDS if k not in OPTIONAL and k not in FAMILY_KINDS],
        "consent_titles": KIND_TITLES,
        "csrf": await csrf_token(request),
    }
    for name, days in (values.get("screening_cadence") or {}).items():
        values.setdefault(f"screening_cadence_{name}", days)
    for name, total in (values.get("severe_scores") or {}).items():
        values.setdefault(f"severe_scores_{name}", total)
    return await render(request, "admin_program.html", context, status)


@requires(Action.PROGRAMS_MANAGE)
async def program_update(request: web.Request) -> web.StreamResponse:
    """Save a program's settings."""
    program = await _program(request)
    data = _program_data(await read_form(request))
    body, errors = validate(ProgramIn, data)
    if body is not None:
        try:
            async with request.app[ENGINE].begin() as conn:
                await catalog.update_program(conn, program["id"], body)
                await audit_event(
                    request, conn, "program.updated", target_type="program", target_id=program["id"]
                )
        except catalog.CatalogError as exc:
            errors = {exc.field: exc.reason}
        else:
            raise web.HTTPSeeOther("/admin/programs")
    return await _program_view(request, program, data, errors, status=400)
