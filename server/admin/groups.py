"""Admin pages for groups: list, create, edit (members, facilitators, weekly schedule)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict

from rooms.schedule import WEEKDAYS
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.accounts.scope import program_scope
from server.admin.forms import (
    TIME_ZONES,
    Errors,
    validate,
    visible_programs,
)
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import GroupIn
from server.render import render

TEMPLATES = ("evening-group-180", "group-90", "individual-50", "psychiatry-25")


def _group_data(form: MultiDict[str], program_id: str) -> dict[str, Any]:
    schedule = [
        {"day": day, "start": form.get(f"{day}_start", ""), "end": form.get(f"{day}_end", "")}
        for day in WEEKDAYS
        if form.get(f"{day}_on") == "on"
    ]
    return {
        "program_id": program_id,
        "name": form.get("name", ""),
        "lead_clinician_id": form.get("lead_clinician_id", ""),
        "cofacilitator_id": form.get("cofacilitator_id") or None,
        "member_ids": form.getall("member_ids", []),
        "time_zone": form.get("time_zone", ""),
        "schedule": schedule,
        "template": form.get("template", ""),
        "starts_on": form.get("starts_on", ""),
        "ends_on": form.get("ends_on") or None,
    }


@requires(Action.GROUPS_MANAGE)
async def groups_page(request: web.Request) -> web.Response:
    """Every group of the admin's scope."""
    async with request.app[ENGINE].connect() as conn:
        found = await catalog_schedule.list_groups(conn, program_scope(identity(request)))
    return await render(
        request, "admin_groups.html", {"groups": found, "programs": await visible_programs(request)}
    )


async def _group_form(
    request: web.Request,
    program_id: str,
    values: dict[str, Any],
    errors: Errors,
    group_id: str | None,
    status: int = 200,
) -> web.Response:
    async with request.app[ENGINE].begin() as conn:
        clinicians = [
            s
            for s in await catalog.list_staff(conn, program_id)
            if s["role"] == "clinician" and not s["disabled"]
        ]
        patients = await catalog_patients.list_patients(conn, request.app[KEYRING], program_id)
        await audit_event(request, conn, "patient.list_viewed", detail={"count": len(patients)})
    by_day = {slot["day"]: slot for slot in values.get("schedule", [])}
    context = {
        "values": values,
        "by_day": by_day,
        "weekdays": WEEKDAYS,
        "errors": errors,
        "group_id": group_id,
        "program_id": program_id,
        "clinicians": clinicians,
        "patients": sorted(patients, key=lambda p: p["display_name"].lower()),
        "templates": TEMPLATES,
        "time_zones": TIME_ZONES,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_group_form.html", context, status)


def _chosen_program(request: web.Request, programs: list[dict[str, Any]]) -> str:
    wanted = request.query.get("program_id") or (programs[0]["id"] if programs else "")
    if wanted not in {p["id"] for p in programs}:
        raise web.HTTPNotFound(reason="There is no such program.")
    return wanted


@requires(Action.GROUPS_MANAGE, phi=True)
async def group_new(request: web.Request) -> web.Response:
    """The form for a new group."""
    program_id = _chosen_program(request, await visible_programs(request))
    today = request.app[CLOCK].now().date().isoformat()
    values = {"time_zone": "America/Los_Angeles", "template": TEMPLATES[0], "starts_on": today}
    return await _group_form(request, program_id, values, {}, None)


@requires(Action.GROUPS_MANAGE, phi=True)
async def group_create(request: web.Request) -> web.StreamResponse:
    """Save a new group."""
    program_id = _chosen_program(request, await visible_programs(request))
    data = _group_data(await read_form(request), program_id)
    body, errors = validate(GroupIn, data)
    if body is not None:
        try:
            async with request.app[ENGINE].begin() as conn:
                record = await catalog_schedule.create_group(
                    conn,
                    body,
                    request.app[CLOCK].now(),
                    request.app[SETTINGS].schedule_horizon_days,
                )
                await audit_event(
                    request, conn, "group.created", target_type="group", target_id=record["id"]
                )
        except catalog.CatalogError as exc:
            errors = {exc.field: exc.reason}
        else:
            raise web.HTTPSeeOther(f"/groups/{record['id']}")
    return await _group_form(request, program_id, data, errors, None, status=400)


async def _editable_group(request: web.Request) -> dict[str, Any]:
    who = identity(request)
    async with request.app[ENGINE].connect() as conn:
        group = await catalog_schedule.get_group(conn, request.match_info["group_id"])
    if group is None or (program_scope(who) and group["program_id"] != who.program_id):
        raise web.HTTPNotFound(reason="There is no such group.")
    return group


@requires(Action.GROUPS_MANAGE, phi=True)
async def group_edit(request: web.Request) -> web.Response:
    """The form filled with a group's settings."""
    group = await _editable_group(request)
    return await _group_form(request, group["program_id"], group, {}, group["id"])


@requires(Action.GROUPS_MANAGE, phi=True)
async def group_update(request: web.Request) -> web.StreamResponse:
    """Save a group's settings; future sessions follow the new schedule."""
    group = await _editable_group(request)
    data = _group_data(await read_form(request), group["program_id"])
    body, errors = validate(GroupIn, data)
    if body is not None:
        try:
            async with request.app[ENGINE].begin() as conn:
                await catalog_schedule.update_group(
                    conn,
                    group["id"],
                    body,
                    request.app[CLOCK].now(),
                    request.app[SETTINGS].schedule_horizon_days,
                )
                await audit_event(
                    request, conn, "group.updated", target_type="group", target_id=group["id"]
                )
        except catalog.CatalogError as exc:
            errors = {exc.field: exc.reason}
        else:
            raise web.HTTPSeeOther(f"/groups/{group['id']}")
    return await _group_form(request, group["program_id"], data, errors, group["id"], status=400)
