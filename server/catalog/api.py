"""The JSON API: thin routes over the catalog's storage, each guarded by a permission.

Storage is store.py (programs, staff), patients.py and schedule.py (groups, sessions).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.accounts import joinlinks
from server.accounts import linksockets as link_sockets
from server.accounts.auth import (
    StaffIdentity,
    audit_event,
    complete_sign_in,
    current_staff,
    identity,
    public,
    requires,
    sign_out,
)
from server.accounts.linkissue import issue_for, link_url
from server.accounts.permissions import Action, Role
from server.accounts.scope import clinician_scope, patient_visible, program_scope
from server.accounts.signin import (
    MISMATCH,
    THROTTLED,
    Outcome,
    check_password,
    check_second_factor,
    record_signed_in,
)
from server.accounts.store import hash_password
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import (
    AppointmentIn,
    GroupIn,
    JoinLinkIn,
    PatientIn,
    ProgramIn,
    SignIn,
    StaffIn,
)
from server.logs import get_logger
from server.middleware import REQUEST_ID, ApiError

log = get_logger(__name__)
Model = TypeVar("Model", bound=BaseModel)
MAX_SESSION_WINDOW_DAYS = 62


async def parse_body(request: web.Request, model: type[Model]) -> Model:
    """Read and validate a JSON body; refuse it with per-field reasons, never echoing input."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "too_large", "the request body is too large") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ApiError(422, "invalid_input", "some fields need attention", fields) from None


def _catalog_error(exc: catalog.CatalogError) -> ApiError:
    code = "conflict" if exc.status == 409 else "invalid_input"
    return ApiError(exc.status, code, exc.reason, [{"field": exc.field, "message": exc.reason}])


def _created(record: dict[str, Any]) -> web.Response:
    return web.json_response(record, status=201)


# Sign-in -------------------------------------------------------------------------------


def _throttled(request: web.Request, retry_after_s: int) -> web.Response:
    body = {
        "error": "too_many_requests",
        "reason": THROTTLED,
        "request_id": request.get(REQUEST_ID),
    }
    return web.json_response(body, status=429, headers={"Retry-After": str(retry_after_s)})


@public
async def post_session(request: web.Request) -> web.Response:
    """Sign a staff member in: e-mail, password and (for enrolled accounts) `code`."""
    body = await parse_body(request, SignIn)
    checked = await check_password(request, str(body.email), body.password)
    outcome, row = checked.outcome, checked.row
    if outcome is Outcome.THROTTLED:
        return _throttled(request, checked.retry_after_s)
    if outcome is Outcome.FAILED:
        raise ApiError(401, "sign_in_failed", MISMATCH)
    if outcome is Outcome.ENROL:
        raise ApiError(
            403, "mfa_enrolment_required", "set up two-step sign-in at /signin in a browser first"
        )
    if outcome is Outcome.SECOND_FACTOR:
        if not body.code:
            raise ApiError(401, "code_required", "send the authenticator code as `code`")
        code = await check_second_factor(request, row, body.code)
        if code.outcome is Outcome.THROTTLED:
            return _throttled(request, code.retry_after_s)
        if code.method is None:
            raise ApiError(401, "code_rejected", "that code did not work")
    who = await complete_sign_in(request, row)
    await record_signed_in(request, row)
    return web.json_response(_who(who))


@public
async def get_session(request: web.Request) -> web.Response:
    """Who is signed in."""
    who = await current_staff(request)
    if who is None:
        raise web.HTTPUnauthorized(reason="sign in first")
    return web.json_response(_who(who) | {"locked": who.locked})


@public
async def delete_session(request: web.Request) -> web.Response:
    """Sign out."""
    who = await current_staff(request)
    if who is not None:
        async with request.app[ENGINE].begin() as conn:
            await audit_event(
                request, conn, "auth.signed_out", target_type="staff", target_id=who.id
            )
        log.info("auth.signed_out", user_id=who.id)
    await sign_out(request)
    return web.json_response({"signed_out": True})


@requires(Action.DASHBOARD_VIEW)
async def post_activity(request: web.Request) -> web.Response:
    """A staff page reports keyboard or pointer activity; the answer says if it is locked."""
    return web.json_response({"locked": identity(request).locked})


def _who(who: StaffIdentity) -> dict[str, str]:
    return {
        "id": who.id,
        "program_id": who.program_id,
        "role": who.role.value,
        "display_name": who.display_name,
    }


# Catalog -------------------------------------------------------------------------------


@requires(Action.PROGRAMS_READ)
async def list_programs(request: web.Request) -> web.Response:
    """Programs the caller may see."""
    async with request.app[ENGINE].connect() as conn:
        found = await catalog.list_programs(conn, program_scope(identity(request)))
    return web.json_response({"programs": found})


@requires(Action.PROGRAMS_MANAGE)
async def create_program(request: web.Request) -> web.Response:
    """Add a program."""
    body = await parse_body(request, ProgramIn)
    try:
        async with request.app[ENGINE].begin() as conn:
            record = await catalog.create_program(conn, body, request.app[CLOCK].now())
            await audit_event(
                request, conn, "program.created", target_type="program", target_id=record["id"]
            )
    except catalog.CatalogError as exc:
        raise _catalog_error(exc) from None
    log.info("program.created", program_id=record["id"])
    return _created(record)


@requires(Action.STAFF_READ)
async def list_staff(request: web.Request) -> web.Response:
    """Staff accounts of the caller's program (every program for admins)."""
    async with request.app[ENGINE].connect() as conn:
        found = await catalog.list_staff(conn, program_scope(identity(request)))
    return web.json_response({"staff": found})


@requires(Action.STAFF_MANAGE)
async def create_staff(request: web.Request) -> web.Response:
    """Add a staff account."""
    body = await parse_body(request, StaffIn)
    password_hash = await hash_password(body.password)
    try:
        async with request.app[ENGINE].begin() as conn:
            record = await catalog.create_staff(conn, body, password_hash, request.app[CLOCK].now())
            await audit_event(
                request, conn, "staff.created", target_type="staff", target_id=record["id"]
            )
    except catalog.CatalogError as exc:
        raise _catalog_error(exc) from None
    log.info("staff.created", user_id=record["id"], role=record["role"])
    return _created(record)


@requires(Action.PATIENTS_READ, phi=True)
async def list_patients(request: web.Request) -> web.Response:
    """Patients: every one in the program for admins, a clinician's own for clinicians."""
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        only = None
        if who.role is Role.CLINICIAN:
            only = await catalog_patients.patients_of_clinician(conn, who.id)
        found = await catalog_patients.list_patients(
            conn, request.app[KEYRING], program_scope(who), only
        )
        await audit_event(request, conn, "patient.list_viewed", detail={"count": len(found)})
    return web.json_response({"patients": found})


@requires(Action.PATIENTS_READ, phi=True)
async def get_patient(request: web.Request) -> web.Response:
    """One patient's intake record; the read is audited."""
    who = identity(request)
    patient_id = request.match_info["patient_id"]
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(reason="no such patient on your caseload")
        record = await catalog_patients.get_patient(conn, request.app[KEYRING], patient_id)
        await audit_event(
            request, conn, "patient.phi_read", target_type="patient", target_id=patient_id
        )
    log.info("patient.phi_read", patient_id=patient_id)
    return web.json_response(record)


@requires(Action.JOIN_LINKS_MANAGE)
async def create_join_link(request: web.Request) -> web.Response:
    """Issue a join link for one session or a standing one; the URL is returned once."""
    body = await parse_body(request, JoinLinkIn)
    patient_id = request.match_info["patient_id"]
    async with request.app[ENGINE].begin() as conn:
        try:
            link = await issue_for(request, conn, patient_id, body.session_id)
        except catalog.CatalogError as exc:
            raise _catalog_error(exc) from None
    return _created(
        {
            "id": link.id,
            "url": link_url(request, link),
            "session_id": link.session_id,
            "expires_at": link.expires_at.isoformat(),
        }
    )


@requires(Action.JOIN_LINKS_MANAGE)
async def revoke_join_link(request: web.Request) -> web.Response:
    """Revoke a join link."""
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        row = await joinlinks.get(conn, request.match_info["link_id"])
        if row is None or not await patient_visible(conn, who, row.patient_id):
            raise web.HTTPNotFound(reason="no such join link")
        await joinlinks.revoke(conn, row.id, who.id, request.app[CLOCK].now())
        await audit_event(
            request, conn, "join_link.revoked", target_type="join_link", target_id=row.id
        )
    await link_sockets.link_revoked(request.app, row.id)
    return web.json_response({"id": row.id, "revoked": True})


@requires(Action.PATIENTS_MANAGE)
async def create_patient(request: web.Request) -> web.Response:
    """Add a patient's intake record."""
    body = await parse_body(request, PatientIn)
    try:
        async with request.app[ENGINE].begin() as conn:
            record = await catalog_patients.create_patient(
                conn, request.app[KEYRING], body, request.app[CLOCK].now()
            )
            await audit_event(
                request, conn, "patient.created", target_type="patient", target_id=record["id"]
            )
    except catalog.CatalogError as exc:
        raise _catalog_error(exc) from None
    log.info("patient.created", patient_id=record["id"])
    return _created(record)


@requires(Action.GROUPS_READ)
async def list_groups(request: web.Request) -> web.Response:
    """Groups; clinicians see only the groups they lead or co-facilitate."""
    who = identity(request)
    async with request.app[ENGINE].connect() as conn:
        found = await catalog_schedule.list_groups(conn, program_scope(who), clinician_scope(who))
    return web.json_response({"groups": found})


@requires(Action.GROUPS_MANAGE)
async def create_group(request: web.Request) -> web.Response:
    """Add a group with members and a weekly schedule."""
    body = await parse_body(request, GroupIn)
    horizon = request.app[SETTINGS].schedule_horizon_days
    try:
        async with request.app[ENGINE].begin() as conn:
            record = await catalog_schedule.create_group(
                conn, body, request.app[CLOCK].now(), horizon
            )
            await audit_event(
                request, conn, "group.created", target_type="group", target_id=record["id"]
            )
    except catalog.CatalogError as exc:
        raise _catalog_error(exc) from None
    log.info("group.created", group_id=record["id"], count=record["sessions_created"])
    return _created(record)


@requires(Action.APPOINTMENTS_READ)
async def list_appointments(request: web.Request) -> web.Response:
    """One-on-one appointments; clinicians see their own."""
    who = identity(request)
    async with request.app[ENGINE].connect() as conn:
        found = await catalog_schedule.list_appointments(
            conn, program_scope(who), clinician_scope(who)
        )
    return web.json_response({"appointments": found})


@requires(Action.APPOINTMENTS_MANAGE)
async def create_appointment(request: web.Request) -> web.Response:
    """Add a one-on-one appointment."""
    body = await parse_body(request, AppointmentIn)
    try:
        async with request.app[ENGINE].begin() as conn:
            record = await catalog_schedule.create_appointment(conn, body, request.app[CLOCK].now())
            await audit_event(
                request,
                conn,
                "appointment.created",
                target_type="appointment",
                target_id=record["id"],
            )
    except catalog.CatalogError as exc:
        raise _catalog_error(exc) from None
    log.info("appointment.created", appointment_id=record["id"])
    return _created(record)


@requires(Action.SESSIONS_READ)
async def list_sessions(request: web.Request) -> web.Response:
    """Session instances starting from `from` (a date, default today) for `days` days."""
    start, days = _session_window(request.query, request.app[CLOCK].now().date())
    who = identity(request)
    begin = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    async with request.app[ENGINE].connect() as conn:
        found = await catalog_schedule.list_sessions(
            conn,
            program_scope(who),
            begin,
            begin + dt.timedelta(days=days),
            clinician_scope(who),
        )
    return web.json_response({"sessions": found})


def _session_window(query: Any, today: dt.date) -> tuple[dt.date, int]:
    unknown = set(query) - {"from", "days"}
    if unknown:
        raise ApiError(400, "invalid_input", f"unknown query parameter: {sorted(unknown)[0]}")
    try:
        start = dt.date.fromisoformat(query["from"]) if "from" in query else today
    except ValueError:
        raise ApiError(
            400,
            "invalid_input",
            "from must be a date like 2026-12-01",
            [{"field": "from", "message": "must be a date like 2026-12-01"}],
        ) from None
    raw_days = query.get("days", "7")
    if not raw_days.isdigit() or not 1 <= int(raw_days) <= MAX_SESSION_WINDOW_DAYS:
        raise ApiError(
            400,
            "invalid_input",
            f"days must be 1-{MAX_SESSION_WINDOW_DAYS}",
            [{"field": "days", "message": f"must be a whole number 1-{MAX_SESSION_WINDOW_DAYS}"}],
        )
    return start, int(raw_days)


def add_routes(app: web.Application) -> None:
    """Register the JSON API."""
    app.router.add_post("/api/auth/session", post_session)
    app.router.add_get("/api/auth/session", get_session)
    app.router.add_delete("/api/auth/session", delete_session)
    app.router.add_post("/api/activity", post_activity)
    app.router.add_get("/api/programs", list_programs)
    app.router.add_post("/api/programs", create_program)
    app.router.add_get("/api/staff", list_staff)
    app.router.add_post("/api/staff", create_staff)
    app.router.add_get("/api/patients", list_patients)
    app.router.add_post("/api/patients", create_patient)
    app.router.add_get("/api/patients/{patient_id}", get_patient)
    app.router.add_post("/api/patients/{patient_id}/join-links", create_join_link)
    app.router.add_delete("/api/join-links/{link_id}", revoke_join_link)
    app.router.add_get("/api/groups", list_groups)
    app.router.add_post("/api/groups", create_group)
    app.router.add_get("/api/appointments", list_appointments)
    app.router.add_post("/api/appointments", create_appointment)
    app.router.add_get("/api/sessions", list_sessions)
