"""The patient's guided technology check (/techcheck), keeping its result, and the
clinician's 10-minute technology test session."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from rooms.schedule import zone
from rooms.techcheck import TechCheckError, Thresholds, parse_result
from server import audit
from server.accounts.auth import audit_event, csrf_token, read_form, requires
from server.accounts.permissions import Action
from server.appkeys import CLOCK, ENGINE, SETTINGS
from server.caseload.appointments import schedule_from_form
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


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def schedule_test(request: web.Request) -> web.StreamResponse:
    """Schedule a 10-minute, one-on-one technology test session with the patient."""
    appointment_id = await schedule_from_form(
        request, kind="individual", template=TEST_TEMPLATE, minutes=TEST_MINUTES, what="test"
    )
    log.info("techcheck.test_session_scheduled", appointment_id=appointment_id)
    raise web.HTTPSeeOther(f"/patients/{request.match_info['patient_id']}")


def add_routes(app: web.Application) -> None:
    """Register the technology check's pages."""
    app.router.add_get("/techcheck", techcheck_page)
    app.router.add_post("/techcheck/result", result_submit)
    app.router.add_post("/patients/{patient_id}/tech-test", schedule_test)
