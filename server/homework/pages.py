"""Homework pages: the patient's list and phone-sized form, and the staff's assign and
review. Patients come in by their join-link session; staff by role and caseload. Every
opening of sealed answers or task text is audited; nothing of them is logged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from care.worksheets import (
    FREE_TEXT,
    AnswersInvalid,
    UnknownWorksheet,
    labelled,
    library_for,
    offered,
    parse_answers,
    parse_instructions,
)
from rooms.schedule import zone
from server import audit
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.joinlinks import patient_sessions
from server.accounts.permissions import Action
from server.accounts.scope import group_visible, patient_visible
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.homework import store
from server.logs import get_logger
from server.render import render
from server.roomsocket.access import current_link

log = get_logger(__name__)
STATES = {
    "to_do": "To do",
    "draft": "Draft saved",
    "handed_in": "Handed in",
    "reviewed": "Handed in, read by your clinician",
}
STAFF_STATES = {
    "to_do": "due",
    "draft": "draft saved",
    "handed_in": "handed in, not reviewed",
    "reviewed": "reviewed",
}
ACTIONS = ("draft", "hand_in")


def _when(moment: dt.datetime, time_zone: str) -> str:
    return moment.astimezone(zone(time_zone)).strftime("%a %b %-d, %-I:%M %p")


# Patients ---------------------------------------------------------------------------------


async def _patient_link(request: web.Request) -> Any:
    async with request.app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
    if link is None:
        raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
    return link


async def _own(request: web.Request, link: Any) -> store.Assignment:
    async with request.app[ENGINE].connect() as conn:
        found = await store.get(conn, request.match_info["assignment_id"])
    # Another patient's assignment is answered as one that does not exist.
    if found is None or found.patient_id != link.patient_id:
        raise web.HTTPNotFound(reason="There is no such homework for you.")
    return found


async def homework_list(request: web.Request) -> web.Response:
    """The patient's homework: what is due before which session, and what is handed in."""
    link = await _patient_link(request)
    async with request.app[ENGINE].connect() as conn:
        found = await store.of_patient(conn, link.patient_id)
    items = [
        {
            "id": a.id,
            "title": a.worksheet.title,
            "due": f"{a.due_title}, {_when(a.due_at, link.patient_time_zone)}",
            "state": a.state,
            "state_label": STATES[a.state],
        }
        for a in found
    ]
    context = {"items": items, "program_phone": link.program_phone, "patient_page": True}
    return await render(request, "homework_list.html", context)


async def _form_page(
    request: web.Request,
    link: Any,
    assignment: store.Assignment,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    keyring = request.app[KEYRING]
    saved = assignment.answers(keyring)
    async with request.app[ENGINE].begin() as conn:
        await audit_event(
            request,
            conn,
            "homework.opened",
            actor=audit.Actor("patient", link.patient_id),
            target_type="homework",
            target_id=assignment.id,
        )
    shown = values if values is not None else {k: str(v) for k, v in saved.items()}
    context = {
        "a": assignment,
        "sheet": assignment.worksheet,
        "instructions": assignment.instructions(keyring),
        "due": f"{assignment.due_title}, {_when(assignment.due_at, link.patient_time_zone)}",
        "values": shown,
        "errors": errors or {},
        "answers": labelled(assignment.worksheet, saved),
        "handed_in_local": (
            _when(assignment.handed_in_at, link.patient_time_zone)
            if assignment.handed_in_at
            else None
        ),
        "saved_local": (
            _when(assignment.saved_at, link.patient_time_zone) if assignment.saved_at else None
        ),
        "just": request.query.get("saved", ""),
        "csrf": await csrf_token(request),
        "program_phone": link.program_phone,
        "patient_page": True,
    }
    return await render(request, "homework_form.html", context, status)


async def homework_form(request: web.Request) -> web.Response:
    """One assignment as a phone-sized form (read-only once handed in)."""
    link = await _patient_link(request)
    return await _form_page(request, link, await _own(request, link))


async def homework_submit(request: web.Request) -> web.StreamResponse:
    """Keep a draft or hand the homework in; a mistake is shown beside its field."""
    link = await _patient_link(request)
    form = await read_form(request)
    assignment = await _own(request, link)
    action = form.get("action", "")
    if action not in ACTIONS:
        raise web.HTTPBadRequest(reason="Choose Save draft or Hand in.")
    if assignment.handed_in_at is not None:
        raise web.HTTPConflict(reason="This homework has already been handed in.")
    data = {k: v for k, v in form.items() if k not in ("csrf_token", "action")}
    hand_in = action == "hand_in"
    try:
        answers = parse_answers(assignment.worksheet, data, hand_in=hand_in)
    except AnswersInvalid as exc:
        return await _form_page(
            request, link, assignment, values=data, errors=exc.errors, status=400
        )
    async with request.app[ENGINE].begin() as conn:
        try:
            await store.save(
                conn,
                request.app[KEYRING],
                assignment,
                answers,
                hand_in=hand_in,
                now=request.app[CLOCK].now(),
            )
        except store.HomeworkStateError:
            raise web.HTTPConflict(reason="This homework has already been handed in.") from None
        await audit_event(
            request,
            conn,
            "homework.handed_in" if hand_in else "homework.draft_saved",
            actor=audit.Actor("patient", link.patient_id),
            target_type="homework",
            target_id=assignment.id,
        )
    log.info(
        "homework.handed_in" if hand_in else "homework.draft_saved", patient_id=link.patient_id
    )
    raise web.HTTPSeeOther(f"/homework/{assignment.id}?saved={action}")


# Staff ------------------------------------------------------------------------------------


async def patient_section(
    conn: AsyncConnection, patient_id: str, now: dt.datetime
) -> dict[str, Any]:
    """What the patient's page shows of homework: states (no content) and the assign form."""
    row = await catalog_patients.get_patient_row(conn, patient_id)
    time_zone = row.time_zone
    sud = await store.program_is_sud(conn, row.program_id)
    found = await store.of_patient(conn, patient_id)
    upcoming = await patient_sessions(conn, patient_id, now)
    return {
        "library": library_for(sud),
        "free_text": FREE_TEXT,
        "due_options": [
            (s.session_id, f"{s.title}, {_when(s.starts_at, time_zone)}") for s in upcoming[:10]
        ],
        "items": [
            {
                "id": a.id,
                "title": a.worksheet.title,
                "due": f"{a.due_title}, {_when(a.due_at, time_zone)}",
                "state": a.state,
                "state_label": STAFF_STATES[a.state],
            }
            for a in found[:30]
        ],
    }


def _choice(form: Any, substance_use: bool) -> tuple[Any, str]:
    try:
        sheet = offered(form.get("worksheet", ""), substance_use=substance_use)
    except UnknownWorksheet:
        raise web.HTTPBadRequest(
            reason="Choose a worksheet from the library, or a free-text task."
        ) from None
    try:
        instructions = parse_instructions(sheet.key, form.get("instructions", ""))
    except AnswersInvalid as exc:
        raise web.HTTPBadRequest(reason=f"Task text: {exc.errors['instructions']}.") from None
    return sheet, instructions


@requires(Action.PATIENTS_READ, phi=True)
async def assign_to_patient(request: web.Request) -> web.StreamResponse:
    """Assign a worksheet or a free-text task to one patient, due at one of their sessions."""
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
        sheet, instructions = _choice(form, await store.program_is_sud(conn, row.program_id))
        due = form.get("due_session_id", "")
        if due not in {s.session_id for s in await patient_sessions(conn, patient_id, now)}:
            raise web.HTTPBadRequest(
                reason="Choose one of the patient's coming sessions as the due session."
            )
        batch = await store.assign(
            conn,
            request.app[KEYRING],
            program_id=row.program_id,
            patient_ids=[patient_id],
            group_id=None,
            sheet=sheet,
            instructions=instructions,
            due_session_id=due,
            by=who.id,
            now=now,
        )
        await audit_event(
            request,
            conn,
            "homework.assigned",
            target_type="patient",
            target_id=patient_id,
            detail={"worksheet": sheet.key, "batch_id": batch},
        )
    raise web.HTTPSeeOther(f"/patients/{patient_id}#homework")


async def group_section(
    conn: AsyncConnection, group: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """What the group's page shows of homework: the assign form and each batch's count."""
    sud = await store.program_is_sud(conn, group["program_id"])
    sessions = await _group_sessions(conn, group, now)
    return {
        "library": library_for(sud),
        "free_text": FREE_TEXT,
        "due_options": [
            (s["id"], _when(s["starts_at"], group["time_zone"])) for s in sessions[:10]
        ],
        "batches": [
            {**b, "due": f"{_when(b['due_at'], group['time_zone'])}"}
            for b in await store.of_group(conn, group["id"])
        ],
    }


async def _group_sessions(
    conn: AsyncConnection, group: dict[str, Any], now: dt.datetime
) -> list[dict[str, Any]]:
    found = await catalog_schedule.list_sessions(
        conn, group["program_id"], now, now + dt.timedelta(days=28)
    )
    upcoming = [
        {**s, "starts_at": _moment(s["starts_at"]), "ends_at": _moment(s["ends_at"])}
        for s in found
        if s["group_id"] == group["id"] and s["state"] not in ("cancelled", "ended")
    ]
    return sorted((s for s in upcoming if s["ends_at"] > now), key=lambda s: s["starts_at"])


def _moment(value: str | dt.datetime) -> dt.datetime:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


@requires(Action.PATIENTS_READ, phi=True)
async def assign_to_group(request: web.Request) -> web.StreamResponse:
    """Assign a worksheet or a task to every current member of a group, due at one session."""
    form = await read_form(request)
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        group = await group_visible(conn, who, request.match_info["group_id"])
        if group is None:
            raise web.HTTPNotFound(reason="There is no such group, or it is not one of yours.")
        sheet, instructions = _choice(form, await store.program_is_sud(conn, group["program_id"]))
        due = form.get("due_session_id", "")
        if due not in {s["id"] for s in await _group_sessions(conn, group, now)}:
            raise web.HTTPBadRequest(
                reason="Choose one of the group's coming sessions as the due session."
            )
        if not group["member_ids"]:
            raise web.HTTPBadRequest(reason="This group has no members to assign homework to.")
        batch = await store.assign(
            conn,
            request.app[KEYRING],
            program_id=group["program_id"],
            patient_ids=group["member_ids"],
            group_id=group["id"],
            sheet=sheet,
            instructions=instructions,
            due_session_id=due,
            by=who.id,
            now=now,
        )
        await audit_event(
            request,
            conn,
            "homework.assigned",
            target_type="group",
            target_id=group["id"],
            detail={
                "worksheet": sheet.key,
                "batch_id": batch,
                "patients": len(group["member_ids"]),
            },
        )
    raise web.HTTPSeeOther(f"/groups/{group['id']}#homework")


async def _staff_assignment(request: web.Request, conn: AsyncConnection) -> store.Assignment:
    patient_id = request.match_info["patient_id"]
    if not await patient_visible(conn, identity(request), patient_id):
        raise web.HTTPNotFound(reason="There is no such patient, or they are not on your caseload.")
    found = await store.get(conn, request.match_info["assignment_id"])
    if found is None or found.patient_id != patient_id:
        raise web.HTTPNotFound(reason="There is no such homework for this patient.")
    return found


@requires(Action.PATIENTS_READ, phi=True)
async def review_page(request: web.Request) -> web.Response:
    """A patient's homework with the answers (each view audited) and a Reviewed action."""
    keyring = request.app[KEYRING]
    async with request.app[ENGINE].begin() as conn:
        assignment = await _staff_assignment(request, conn)
        patient = await catalog_patients.get_patient_row(conn, assignment.patient_id)
        names = await catalog_patients.display_names(conn, keyring, [assignment.patient_id])
        await audit_event(
            request,
            conn,
            "patient.phi_read",
            target_type="patient",
            target_id=assignment.patient_id,
            detail={"fields": "homework", "assignment_id": assignment.id},
        )
    time_zone = patient.time_zone
    context = {
        "a": assignment,
        "patient_id": assignment.patient_id,
        "display_name": names[assignment.patient_id],
        "sheet": assignment.worksheet,
        "instructions": assignment.instructions(keyring),
        "answers": labelled(assignment.worksheet, assignment.answers(keyring)),
        "due": f"{assignment.due_title}, {_when(assignment.due_at, time_zone)}",
        "state_label": STAFF_STATES[assignment.state],
        "handed_in_local": (
            _when(assignment.handed_in_at, time_zone) if assignment.handed_in_at else None
        ),
        "reviewed_local": (
            _when(assignment.reviewed_at, time_zone) if assignment.reviewed_at else None
        ),
        "csrf": await csrf_token(request),
    }
    return await render(request, "homework_review.html", context)


@requires(Action.PATIENTS_READ, phi=True)
async def mark_reviewed(request: web.Request) -> web.StreamResponse:
    """Record that the clinician has read the handed-in homework."""
    await read_form(request)
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        assignment = await _staff_assignment(request, conn)
        try:
            await store.mark_reviewed(conn, assignment, who.id, request.app[CLOCK].now())
        except store.HomeworkStateError:
            raise web.HTTPConflict(reason="This homework has not been handed in yet.") from None
        await audit_event(
            request,
            conn,
            "homework.reviewed",
            target_type="homework",
            target_id=assignment.id,
            detail={"patient_id": assignment.patient_id},
        )
    raise web.HTTPSeeOther(f"/patients/{assignment.patient_id}/homework/{assignment.id}")


def add_routes(app: web.Application) -> None:
    """Register the homework pages."""
    app.router.add_get("/homework", homework_list)
    app.router.add_get("/homework/{assignment_id}", homework_form)
    app.router.add_post("/homework/{assignment_id}", homework_submit)
    app.router.add_post("/patients/{patient_id}/homework", assign_to_patient)
    app.router.add_post("/groups/{group_id}/homework", assign_to_group)
    app.router.add_get("/patients/{patient_id}/homework/{assignment_id}", review_page)
    app.router.add_post("/patients/{patient_id}/homework/{assignment_id}/reviewed", mark_reviewed)
