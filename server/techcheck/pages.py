"""The patient's guided technology check (/techcheck), keeping its result, and the
clinician's 10-minute technology test session."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from rooms.schedule import zone
from rooms.techcheck import TechCheckError, Thresholds, parse_result
from server import audit
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action, Role
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, ENGINE, SETTINGS
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import AppointmentIn
from server.logs import get_logger
from server.render import render
from server.roomsocket.access import current_link
from server.techcheck import store

log = get_logger(__name__)
THRESHOLDS = Thresholds()
RUNS_PER_HOUR = 10
TEST_TEMPLATE = "tech-test-10"
TEST_MINUTES = 10


def _wants_json(request: web.Request) -> bool:
    return request.headers.get("Accept", "").startswith("application/json")


async def techcheck_page(request: web.Request) -> web.Response:
    """The step-by-step check; it needs the patient's link on this device, not a session."""
    async with request.app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
        if link is None:
            context = {"state": "no_link", "patient_page": True}
            return await render(request, "join_gone.html", context, status=401)
        latest = (await store.latest_for(conn, [link.patient_id])).get(link.patient_id)
    settings = request.app[SETTINGS]
    context = {
        "csrf": await csrf_token(request),
        "thresholds": json.dumps(THRESHOLDS.to_json()),
        "relay_configured": bool(settings.turn_urls),
        "video_kbps": settings.video_kbps,
        "program_phone": link.program_phone,
        "latest": latest,
        "latest_local": latest.checked_at.astimezone(zone(link.patient_time_zone))
        if latest is not None
        else None,
    }
    return await render(request, "techcheck.html", context)


def _refuse(request: web.Request, status: int, reason: str) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error": reason}, status=status)
    raise _http(status, reason)


def _http(status: int, reason: str) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        429: web.HTTPTooManyRequests,
    }
    return kinds[status](reason=reason)


async def result_submit(request: web.Request) -> web.StreamResponse:
    """Keep one run of the check (CSRF, validated, at most RUNS_PER_HOUR an hour)."""
    form = await read_form(request)
    now = request.app[CLOCK].now()
    settings = request.app[SETTINGS]
    async with request.app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
    if link is None:
        return _refuse(request, 401, "Open the link your program sent you.")
    try:
        result = parse_result(form, THRESHOLDS, relay_configured=bool(settings.turn_urls))
    except TechCheckError as exc:
        return _refuse(request, 400, f"The check could not be saved: {exc.field} {exc.reason}.")
    async with request.app[ENGINE].begin() as conn:
        if await store.runs_since(conn, link.patient_id, now - dt.timedelta(hours=1)) >= (
            RUNS_PER_HOUR
        ):
            return _refuse(request, 429, "That is enough checks for now: try again in an hour.")
        check_id = await store.save(conn, link.patient_id, result, now)
        await audit_event(
            request,
            conn,
            "patient.tech_check",
            actor=audit.Actor("patient", link.patient_id),
            target_type="tech_check",
            target_id=check_id,
            outcome="ok" if result.passed else "problems",
            detail={"problems": list(result.problems)},
        )
    log.info(
        "techcheck.passed" if result.passed else "techcheck.problems", patient_id=link.patient_id
    )
    body: dict[str, Any] = {
        "type": "techcheck_saved",
        "passed": result.passed,
        "problems": list(result.problems),
        "steps": dict(result.steps),
    }
    if _wants_json(request):
        return web.json_response(body)
    raise web.HTTPSeeOther("/techcheck")


def _starts_at(text: str, time_zone: str) -> dt.datetime:
    try:
        local = dt.datetime.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(reason="Choose the date and time of the test.") from None
    if local.tzinfo is not None:
        raise web.HTTPBadRequest(reason="Choose the date and time of the test.")
    return local.replace(tzinfo=zone(time_zone))


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def schedule_test(request: web.Request) -> web.StreamResponse:
    """Schedule a 10-minute, one-on-one technology test session with the patient."""
    form = await read_form(request)
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(
                reason="There is no such patient, or they are not on your caseload."
            )
        row = await catalog_patients.get_patient_row(conn, patient_id)
        assert row is not None
        clinician_id = form.get("clinician_id", "") if who.role is Role.ADMIN else who.id
        starts = _starts_at(form.get("starts_at", ""), row.time_zone)
        try:
            data = AppointmentIn(
                program_id=row.program_id,
                patient_id=patient_id,
                clinician_id=clinician_id,
                template=TEST_TEMPLATE,
                starts_at=starts,
                minutes=TEST_MINUTES,
            )
        except ValidationError:
            raise web.HTTPBadRequest(reason="Choose the clinician who runs the test.") from None
        try:
            record = await catalog_schedule.create_appointment(conn, data, now)
        except catalog.CatalogError as exc:
            raise web.HTTPBadRequest(
                reason=f"The test could not be scheduled: {exc.reason}."
            ) from None
        await audit_event(
            request,
            conn,
            "appointment.created",
            target_type="appointment",
            target_id=record["id"],
            detail={"template": TEST_TEMPLATE},
        )
    log.info("techcheck.test_session_scheduled", appointment_id=record["id"])
    raise web.HTTPSeeOther(f"/patients/{patient_id}")


def add_routes(app: web.Application) -> None:
    """Register the technology check's pages."""
    app.router.add_get("/techcheck", techcheck_page)
    app.router.add_post("/techcheck/result", result_submit)
    app.router.add_post("/patients/{patient_id}/tech-test", schedule_test)
