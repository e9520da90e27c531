"""A patient's Stanley-Brown safety plan: read the current version, record a new one.

Clinicians on the patient's caseload and admins only; the read and each new version are
audited. Versions are never edited: a change is a new version (server/crisis/safety_data.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crisis.safety_plan import STEPS, PlanInvalid, parse_plan
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.crisis import safety_data
from server.render import render


async def _page(
    request: web.Request,
    patient_id: str,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    saved: int | None = None,
) -> web.Response:
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, identity(request), patient_id):
            raise web.HTTPNotFound(
                reason="There is no such patient, or they are not on your caseload."
            )
        current = await safety_data.current_plan(conn, request.app[KEYRING], patient_id)
        await audit_event(
            request, conn, "safety.plan_read", target_type="patient", target_id=patient_id
        )
    shown: dict[str, Any] = current.plan.to_json() if current is not None else {}
    context = {
        "patient_id": patient_id,
        "steps": STEPS,
        "values": values if values is not None else shown,
        "errors": errors or {},
        "current": current,
        "saved": saved,
        "csrf": await csrf_token(request),
    }
    return await render(request, "safety_plan.html", context, 422 if errors else 200)


@requires(Action.PATIENTS_READ, phi=True)
async def plan_page(request: web.Request) -> web.Response:
    """The patient's current plan, in a form that records the next version."""
    return await _page(request, request.match_info["patient_id"])


@requires(Action.PATIENTS_READ, phi=True)
async def plan_save(request: web.Request) -> web.Response:
    """Record a new version of the plan."""
    patient_id = request.match_info["patient_id"]
    form = await read_form(request)
    values = {name: str(form.get(name, "")) for name, _label in STEPS}
    try:
        plan = parse_plan(values)
    except PlanInvalid as exc:
        return await _page(request, patient_id, values=values, errors=exc.errors)
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(
                reason="There is no such patient, or they are not on your caseload."
            )
        version = await safety_data.save_plan(
            conn, request.app[KEYRING], patient_id, plan, who.id, request.app[CLOCK].now()
        )
        await audit_event(
            request,
            conn,
            "safety.plan_recorded",
            target_type="patient",
            target_id=patient_id,
            detail={"version": version},
        )
    raise web.HTTPSeeOther(f"/patients/{patient_id}/safety-plan")


def add_routes(app: web.Application) -> None:
    """Register the safety plan page."""
    app.router.add_get("/patients/{patient_id}/safety-plan", plan_page)
    app.router.add_post("/patients/{patient_id}/safety-plan", plan_save)
