"""Admin pages for patients' intake records: list, create, edit."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict

from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.accounts.scope import program_scope
from server.admin.forms import (
    TIME_ZONES,
    Errors,
    blank_to_none,
    cadence_from,
    validate,
    visible_programs,
)
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.catalog.schemas import PatientIn
from server.render import render

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
        **blank_to_none(form, *PATIENT_FIELDS),
        "time_zone": form.get("time_zone", ""),
        "support_release": form.get("support_release") == "on",
        "adolescent": form.get("adolescent") == "on",
        "screening_cadence": cadence_from(form),
    }
    data["legal_name"] = data["legal_name"] or ""
    data["display_name"] = data["display_name"] or ""
    support = blank_to_none(
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
        "programs": await visible_programs(request),
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
    body, errors = validate(PatientIn, data)
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
    body, errors = validate(PatientIn, data)
    if body is not None:
        async with request.app[ENGINE].begin() as conn:
            await catalog_patients.update_patient(conn, request.app[KEYRING], patient["id"], body)
            await audit_event(
                request, conn, "patient.updated", target_type="patient", target_id=patient["id"]
            )
        raise web.HTTPSeeOther(f"/patients/{patient['id']}")
    return await _patient_form(request, _flatten(data), errors, patient["id"], status=400)
