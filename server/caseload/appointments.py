"""One-on-one appointments scheduled from the patient's page (the technology test, a
family session): the form's local date and time, the clinician, the audit row."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from aiohttp import web
from pydantic import ValidationError

from rooms.schedule import zone
from server.accounts.auth import audit_event, identity, read_form
from server.accounts.permissions import Role
from server.accounts.scope import patient_visible
from server.appkeys import CLOCK, ENGINE
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import AppointmentIn


def local_start(text: str, time_zone: str, what: str) -> dt.datetime:
    """A `datetime-local` field's value in the patient's time zone."""
    try:
        local = dt.datetime.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"Choose the date and time of the {what}.") from None
    if local.tzinfo is not None:
        raise web.HTTPBadRequest(reason=f"Choose the date and time of the {what}.")
    return local.replace(tzinfo=zone(time_zone))


async def schedule_from_form(
    request: web.Request,
    *,
    kind: Literal["individual", "family"],
    template: str,
    minutes: int,
    what: str,
) -> str:
    """Create the appointment the patient page's form asks for; its id.

    Clinicians schedule with themselves, admins name the clinician. The patient must be on
    the caller's caseload (404 otherwise, as for the page itself).
    """
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
        assert row is not None  # patient_visible found it
        clinician_id = form.get("clinician_id", "") if who.role is Role.ADMIN else who.id
        starts = local_start(form.get("starts_at", ""), row.time_zone, what)
        if starts <= now:
            raise web.HTTPBadRequest(reason=f"Choose a time in the future for the {what}.")
        try:
            data = AppointmentIn(
                program_id=row.program_id,
                patient_id=patient_id,
                clinician_id=clinician_id,
                kind=kind,
                template=template,
                starts_at=starts,
                minutes=minutes,
            )
        except ValidationError:
            raise web.HTTPBadRequest(reason=f"Choose the clinician for the {what}.") from None
        try:
            record = await catalog_schedule.create_appointment(conn, data, now)
        except catalog.CatalogError as exc:
            raise web.HTTPBadRequest(
                reason=f"The {what} could not be scheduled: {exc.reason}."
            ) from None
        await audit_event(
            request,
            conn,
            "appointment.created",
            target_type="appointment",
            target_id=record["id"],
            detail={"template": template, "kind": kind},
        )
    return str(record["id"])
