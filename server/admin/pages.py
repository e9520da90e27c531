"""Admin pages: programs, staff accounts, patients' intake records and groups."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict
from pydantic import BaseModel, ValidationError

from rooms.consent import KIND_TITLES, KINDS, OPTIONAL
from rooms.schedule import WEEKDAYS
from server.accounts import livesockets as staff_sockets
from server.accounts import store as accounts
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.accounts.scope import program_scope
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import GroupIn, InviteIn, PatientIn, ProgramIn
from server.render import render

TEMPLATES = ("evening-group-180", "group-90", "individual-50", "psychiatry-25")
TIME_ZONES = (
    "America/Los_Angeles",
    "America/Denver",
    "America/Phoenix",
    "America/Chicago",
    "America/New_York",
    "America/Anchorage",
    "Pacific/Honolulu",
)
Errors = dict[str, str]


def field_errors(exc: ValidationError) -> Errors:
    """Validation errors keyed by form field name (nested fields joined by "_")."""
    errors: Errors = {}
    for err in exc.errors(include_input=False, include_url=False):
        parts = [str(part) for part in err["loc"] if not isinstance(part, int)]
        name = "_".join(parts) or "form"
        message = err["msg"].removeprefix("Value error, ")
        errors.setdefault(name, message)
    return errors


def _validate(model: type[BaseModel], data: dict[str, Any]) -> tuple[Any, Errors]:
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        return None, field_errors(exc)


def _blank_to_none(form: MultiDict[str], *names: str) -> dict[str, Any]:
    return {name: (form.get(name, "").strip() or None) for name in names}


async def _programs(request: web.Request) -> list[dict[str, Any]]:
    async with request.app[ENGINE].connect() as conn:
        return await catalog.list_programs(conn, program_scope(identity(request)))


# Programs --------------------------------------------------------------------------------


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


def cadence_from(form: MultiDict[str]) -> dict[str, Any] | None:
    """Days between instruments from a form; blank fields keep the default (None if all are)."""
    found: dict[str, Any] = {}
    for name in ("phq9", "gad7", "cssrs"):
        raw = form.get(f"screening_cadence_{name}", "").strip()
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
        "programs": await _programs(request),
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
    body, errors = _validate(ProgramIn, data)
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
    found = [p for p in await _programs(request) if p["id"] == request.match_info["program_id"]]
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
        "consent_kinds": [k for k in KINDS if k not in OPTIONAL],
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
    body, errors = _validate(ProgramIn, data)
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


# Staff -----------------------------------------------------------------------------------


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
        "programs": await _programs(request),
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
    body, errors = _validate(InviteIn, data)
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


# Patients --------------------------------------------------------------------------------

PATIENT_FIELDS = (
    "legal_name",
    "display_name",
    "date_of_birth",
    "home_address",
    "backup_phone",
    "alternate_phone",
    "preferred_ed",
)


def _patient_data(form: MultiDict[str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "program_id": form.get("program_id", ""),
        **_blank_to_none(form, *PATIENT_FIELDS),
        "time_zone": form.get("time_zone", ""),
        "support_release": form.get("support_release") == "on",
        "adolescent": form.get("adolescent") == "on",
        "screening_cadence": cadence_from(form),
    }
    data["legal_name"] = data["legal_name"] or ""
    data["display_name"] = data["display_name"] or ""
    support = _blank_to_none(
        form, "support_person_name", "support_person_relationship", "support_person_phone"
    )
    if any(support.values()):
        data["support_person"] = {
            "name": support["support_person_name"] or "",
            "relationship": support["support_person_relationship"] or "",
            "phone": support["support_person_phone"] or "",
        }
    return data


def _patient_values(record: dict[str, Any]) -> dict[str, Any]:
    values = dict(record)
    for name, days in (record.get("screening_cadence") or {}).items():
        values[f"screening_cadence_{name}"] = days
    support = record.get("support_person") or {}
    for key in ("name", "relationship", "phone"):
        values[f"support_person_{key}"] = support.get(key, "")
    return values


@requires(Action.PATIENTS_MANAGE, phi=True)
async def patients_page(request: web.Request) -> web.Response:
    """Every patient of the admin's scope (names are PHI: the view is audited)."""
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        found = await catalog_patients.list_patients(conn, request.app[KEYRING], program_scope(who))
        await audit_event(request, conn, "patient.list_viewed", detail={"count": len(found)})
    found.sort(key=lambda p: p["legal_name"].lower())
    return await render(request, "admin_patients.html", {"patients": found})


async def _patient_form(
    request: web.Request,
    values: dict[str, Any],
    errors: Errors,
    patient_id: str | None,
    status: int = 200,
) -> web.Response:
    context = {
        "values": values,
        "errors": errors,
        "patient_id": patient_id,
        "programs": await _programs(request),
        "time_zones": TIME_ZONES,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_patient_form.html", context, status)


@requires(Action.PATIENTS_MANAGE, phi=True)
async def patient_new(request: web.Request) -> web.Response:
    """The intake form for a new patient."""
    return await _patient_form(request, {"time_zone": "America/Los_Angeles"}, {}, None)


@requires(Action.PATIENTS_MANAGE, phi=True)
async def patient_create(request: web.Request) -> web.StreamResponse:
    """Save a new patient's intake record."""
    data = _patient_data(await read_form(request))
    body, errors = _validate(PatientIn, data)
    if body is not None:
        try:
            async with request.app[ENGINE].begin() as conn:
                record = await catalog_patients.create_patient(
                    conn, request.app[KEYRING], body, request.app[CLOCK].now()
                )
                await audit_event(
                    request, conn, "patient.created", target_type="patient", target_id=record["id"]
                )
        except catalog.CatalogError as exc:
            errors = {exc.field: exc.reason}
        else:
            raise web.HTTPSeeOther(f"/patients/{record['id']}")
    return await _patient_form(request, _flatten(data), errors, None, status=400)


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    return _patient_values({**data, "support_person": data.get("support_person")})


async def _editable_patient(request: web.Request) -> dict[str, Any]:
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        patient = await catalog_patients.get_patient(
            conn, request.app[KEYRING], request.match_info["patient_id"]
        )
        if patient is None or (program_scope(who) and patient["program_id"] != who.program_id):
            raise web.HTTPNotFound(reason="There is no such patient.")
        await audit_event(
            request,
            conn,
            "patient.phi_read",
            target_type="patient",
            target_id=patient["id"],
            detail={"fields": "intake_record_edit"},
        )
    return patient


@requires(Action.PATIENTS_MANAGE, phi=True)
async def patient_edit(request: web.Request) -> web.Response:
    """The intake form filled with a patient's record."""
    patient = await _editable_patient(request)
    return await _patient_form(request, _patient_values(patient), {}, patient["id"])


@requires(Action.PATIENTS_MANAGE, phi=True)
async def patient_update(request: web.Request) -> web.StreamResponse:
    """Save changes to an intake record."""
    patient = await _editable_patient(request)
    form = await read_form(request)
    data = _patient_data(form) | {"program_id": patient["program_id"]}
    body, errors = _validate(PatientIn, data)
    if body is not None:
        async with request.app[ENGINE].begin() as conn:
            await catalog_patients.update_patient(conn, request.app[KEYRING], patient["id"], body)
            await audit_event(
                request, conn, "patient.updated", target_type="patient", target_id=patient["id"]
            )
        raise web.HTTPSeeOther(f"/patients/{patient['id']}")
    return await _patient_form(request, _flatten(data), errors, patient["id"], status=400)


# Groups ----------------------------------------------------------------------------------


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
        request, "admin_groups.html", {"groups": found, "programs": await _programs(request)}
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
    program_id = _chosen_program(request, await _programs(request))
    today = request.app[CLOCK].now().date().isoformat()
    values = {"time_zone": "America/Los_Angeles", "template": TEMPLATES[0], "starts_on": today}
    return await _group_form(request, program_id, values, {}, None)


@requires(Action.GROUPS_MANAGE, phi=True)
async def group_create(request: web.Request) -> web.StreamResponse:
    """Save a new group."""
    program_id = _chosen_program(request, await _programs(request))
    data = _group_data(await read_form(request), program_id)
    body, errors = _validate(GroupIn, data)
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
    body, errors = _validate(GroupIn, data)
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


@requires(Action.PROGRAMS_MANAGE)
async def admin_home(request: web.Request) -> web.Response:
    """The admin's index."""
    return await render(request, "admin_home.html", {})


def add_routes(app: web.Application) -> None:
    """Register the admin pages."""
    router = app.router
    router.add_get("/admin", admin_home)
    router.add_get("/admin/programs", programs_page)
    router.add_post("/admin/programs", program_create)
    router.add_get("/admin/programs/{program_id}", program_page)
    router.add_post("/admin/programs/{program_id}", program_update)
    router.add_get("/admin/staff", staff_page)
    router.add_post("/admin/staff", staff_invite)
    router.add_post("/admin/staff/{staff_id}/disable", staff_disable)
    router.add_post("/admin/staff/{staff_id}/enable", staff_enable)
    router.add_post("/admin/staff/{staff_id}/reset-mfa", staff_reset_mfa)
    router.add_post("/admin/staff/{staff_id}/invite", staff_reinvite)
    router.add_get("/admin/patients", patients_page)
    router.add_get("/admin/patients/new", patient_new)
    router.add_post("/admin/patients/new", patient_create)
    router.add_get("/admin/patients/{patient_id}/edit", patient_edit)
    router.add_post("/admin/patients/{patient_id}/edit", patient_update)
    router.add_get("/admin/groups", groups_page)
    router.add_get("/admin/groups/new", group_new)
    router.add_post("/admin/groups/new", group_create)
    router.add_get("/admin/groups/{group_id}/edit", group_edit)
    router.add_post("/admin/groups/{group_id}/edit", group_update)
