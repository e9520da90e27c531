"""The aftercare plan: staff write it (each save a new version), the patient opens and
downloads it; and the patient's own read-only view of their current safety plan.

Staff: the patient's clinicians and admins (the safety plan page's rule), every read and
save audited. Patients: through the join link opened on this device, at any time (not
only near a session); every read and download is audited with the patient as the actor.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from care.aftercare import (
    MAX_FOLLOW_UPS,
    NATIONAL_LINES,
    RELAPSE_FIELDS,
    STEP_DOWN_LEVELS,
    AftercareInvalid,
    as_text,
    parse_plan,
)
from crisis.directory import format_phone
from rooms.schedule import zone
from server import audit
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import patients as catalog_patients
from server.checkin.safety_checks import zip_at_end
from server.crisis import safety_data
from server.directory import store as directory_store
from server.outcomes import store
from server.render import render
from server.roomsocket.access import current_link
from server.storage.tables import programs, safety_checks

NOT_YOURS = "There is no such patient, or they are not on your caseload."


async def local_crisis_line(
    request: web.Request, conn: AsyncConnection, patient: dict[str, Any]
) -> dict[str, Any]:
    """The directory's crisis line for the patient's ZIP (home address, else the latest
    check-in's location). Example rows hold fictional numbers: never offered as real."""
    zip_code = zip_at_end(patient.get("home_address") or "")
    county = None
    if zip_code is None:
        latest = (
            await conn.execute(
                sa.select(safety_checks.c.zip, safety_checks.c.county)
                .where(safety_checks.c.patient_id == patient["id"])
                .order_by(safety_checks.c.at.desc())
                .limit(1)
            )
        ).first()
        if latest is not None:
            zip_code, county = latest.zip, latest.county
    if not zip_code and not county:
        return {"zip": None, "line": "", "example_only": False}
    local = await directory_store.resolve(
        conn,
        zip_code,
        county,
        request.app[CLOCK].now().date(),
        stale_days=request.app[SETTINGS].directory_stale_days,
    )
    real = next((r.entry for r in local.local if r.entry.crisis_line and not r.entry.example), None)
    return {
        "zip": zip_code,
        "line": format_phone(real.crisis_line or "") if real is not None else "",
        "example_only": real is None and any(r.entry.example for r in local.local),
    }


async def _staff_page(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> web.Response:
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    keyring = request.app[KEYRING]
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason=NOT_YOURS)
        patient = await catalog_patients.get_patient(conn, keyring, patient_id)
        assert patient is not None
        program = (
            await conn.execute(
                sa.select(programs.c.name, programs.c.phone).where(
                    programs.c.id == patient["program_id"]
                )
            )
        ).one()
        current = await store.current_plan(conn, keyring, patient_id)
        safety = await safety_data.current_plan(conn, keyring, patient_id)
        local = await local_crisis_line(request, conn, patient)
        await audit_event(
            request,
            conn,
            "aftercare.read",
            target_type="patient",
            target_id=patient_id,
            detail={"version": current.version if current else None},
        )
        await audit_event(
            request, conn, "safety.plan_read", target_type="patient", target_id=patient_id
        )
    if values is None:
        values = _form_values(current.plan if current else None, local["line"])
    context = {
        "patient": patient,
        "program_name": program.name,
        "program_phone": program.phone,
        "current": current,
        "safety": safety,
        "local": local,
        "values": values,
        "errors": errors or {},
        "levels": STEP_DOWN_LEVELS,
        "relapse_fields": RELAPSE_FIELDS,
        "follow_up_rows": range(1, MAX_FOLLOW_UPS + 1),
        "national": NATIONAL_LINES,
        "saved": request.query.get("saved"),
        "csrf": await csrf_token(request),
    }
    return await render(request, "aftercare_edit.html", context, 422 if errors else 200)


def _form_values(plan: Any, local_line: str) -> dict[str, str]:
    """The form's fields from the current plan, or prefilled for a first plan."""
    if plan is None:
        return {"local_crisis_line": local_line}
    values = {
        "step_down": plan.step_down,
        "step_down_note": plan.step_down_note,
        "local_crisis_line": plan.crisis.local_crisis_line,
        "other_resources": plan.crisis.other,
        **dict(plan.relapse),
    }
    for n, follow_up in enumerate(plan.follow_ups, start=1):
        values[f"fu{n}_date"] = follow_up.on.isoformat()
        values[f"fu{n}_provider"] = follow_up.provider
        values[f"fu{n}_phone"] = follow_up.phone
    return values


@requires(Action.PATIENTS_READ, phi=True)
async def aftercare_page(request: web.Request) -> web.Response:
    """The current aftercare plan in a form that records the next version."""
    return await _staff_page(request)


@requires(Action.PATIENTS_READ, phi=True)
async def aftercare_save(request: web.Request) -> web.StreamResponse:
    """Record a new version of the plan, with a copy of the current safety plan."""
    form = await read_form(request)
    values = {key: str(form.get(key, "")) for key in form}
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    keyring = request.app[KEYRING]
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason=NOT_YOURS)
        row = await catalog_patients.get_patient_row(conn, patient_id)
        program = (
            await conn.execute(
                sa.select(programs.c.phone, programs.c.time_zone).where(
                    programs.c.id == row.program_id
                )
            )
        ).one()
        safety = await safety_data.current_plan(conn, keyring, patient_id)
        try:
            plan = parse_plan(
                values,
                now.astimezone(zone(program.time_zone)).date(),
                program_phone=program.phone,
                safety_plan=safety.plan.steps if safety else (),
                safety_plan_version=safety.version if safety else None,
            )
        except AftercareInvalid as exc:
            errors = exc.errors
        else:
            errors = {}
            version = await store.save_plan(conn, keyring, patient_id, plan, who.id, now)
            await audit_event(
                request,
                conn,
                "aftercare.recorded",
                target_type="patient",
                target_id=patient_id,
                detail={
                    "version": version,
                    "safety_plan_version": safety.version if safety else None,
                },
            )
    if errors:
        return await _staff_page(request, values=values, errors=errors)
    raise web.HTTPSeeOther(f"/patients/{patient_id}/aftercare?saved={version}")


# The patient's own pages --------------------------------------------------------------------


async def _patient_link(request: web.Request, conn: AsyncConnection) -> Any:
    link = await current_link(request, conn)
    if link is None:
        raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
    return link


async def my_aftercare(request: web.Request) -> web.Response:
    """The patient's current aftercare plan, phone-sized."""
    async with request.app[ENGINE].begin() as conn:
        link = await _patient_link(request, conn)
        current = await store.current_plan(conn, request.app[KEYRING], link.patient_id)
        await audit_event(
            request,
            conn,
            "aftercare.patient_read",
            actor=audit.Actor("patient", link.patient_id),
            target_type="patient",
            target_id=link.patient_id,
            detail={"version": current.version if current else None},
        )
    context = {
        "current": current,
        "national": NATIONAL_LINES,
        "program_name": link.program_name,
        "program_phone": link.program_phone,
        "patient_page": True,
    }
    return await render(request, "my_aftercare.html", context)


async def my_aftercare_download(request: web.Request) -> web.Response:
    """The same plan as a text file to keep."""
    async with request.app[ENGINE].begin() as conn:
        link = await _patient_link(request, conn)
        current = await store.current_plan(conn, request.app[KEYRING], link.patient_id)
        if current is None:
            raise web.HTTPNotFound(reason="Your care team has not written your aftercare plan yet.")
        await audit_event(
            request,
            conn,
            "aftercare.patient_download",
            actor=audit.Actor("patient", link.patient_id),
            target_type="patient",
            target_id=link.patient_id,
            detail={"version": current.version},
        )
    text = as_text(
        current.plan,
        program_name=link.program_name,
        version=current.version,
        recorded_on=current.recorded_at.astimezone(zone(link.patient_time_zone)).date(),
    )
    return web.Response(
        text=text,
        content_type="text/plain",
        headers={
            "Content-Disposition": f'attachment; filename="aftercare-plan-v{current.version}.txt"'
        },
    )


async def my_safety_plan(request: web.Request) -> web.Response:
    """The patient's current Stanley-Brown safety plan, read-only, with 988 always shown."""
    async with request.app[ENGINE].begin() as conn:
        link = await _patient_link(request, conn)
        current = await safety_data.current_plan(conn, request.app[KEYRING], link.patient_id)
        await audit_event(
            request,
            conn,
            "safety.plan_patient_read",
            actor=audit.Actor("patient", link.patient_id),
            target_type="patient",
            target_id=link.patient_id,
            detail={"version": current.version if current else None},
        )
    context = {
        "current": current,
        "program_name": link.program_name,
        "program_phone": link.program_phone,
        "patient_page": True,
    }
    return await render(request, "my_safety_plan.html", context)


def add_routes(app: web.Application) -> None:
    """Register the aftercare pages and the patient's safety plan view."""
    app.router.add_get("/patients/{patient_id}/aftercare", aftercare_page)
    app.router.add_post("/patients/{patient_id}/aftercare", aftercare_save)
    app.router.add_get("/my/aftercare", my_aftercare)
    app.router.add_get("/my/aftercare/download", my_aftercare_download)
    app.router.add_get("/my/safety-plan", my_safety_plan)
