"""The daily mood check page (patients, from their link) and each program's reminder setting
(admins)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from care.mood import (
    MOOD_REVIEW_AT_OR_BELOW,
    NOTE_MAX,
    MoodEntry,
    MoodInputError,
    parse_entry,
    parse_reminder_time,
    review_reasons,
)
from rooms.schedule import zone
from server import audit
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.admin.forms import visible_programs
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.logs import get_logger
from server.mood import store as mood_store
from server.render import render
from server.roomsocket.access import current_link

log = get_logger(__name__)
FIELDS = ("mood", "anxiety", "sleep_hours", "urges", "note")


def _values(entry: MoodEntry | None) -> dict[str, str]:
    if entry is None:
        return {}
    return {
        "mood": str(entry.mood),
        "anxiety": str(entry.anxiety),
        "sleep_hours": f"{entry.sleep_hours:g}",
        "urges": "" if entry.urges is None else str(entry.urges),
        "note": entry.note,
    }


async def _patient(request: web.Request) -> tuple[Any, mood_store.PatientProgram]:
    async with request.app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
        if link is None:
            raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
        program = await mood_store.patient_program(conn, link.patient_id)
    return link, program


async def _form_page(
    request: web.Request,
    link: Any,
    program: mood_store.PatientProgram,
    values: dict[str, str],
    *,
    existing: mood_store.Stored | None,
    errors: dict[str, str] | None = None,
    confirm: bool = False,
    status: int = 200,
) -> web.Response:
    local = zone(program.time_zone)
    context = {
        "values": values,
        "errors": errors or {},
        "existing_at": None if existing is None else existing.updated_at.astimezone(local),
        "confirm": confirm,
        "sud": program.substance_use,
        "scale": range(0, 11),
        "note_max": NOTE_MAX,
        "program_phone": link.program_phone,
        "csrf": await csrf_token(request),
    }
    return await render(request, "mood.html", context, status)


async def mood_page(request: web.Request) -> web.Response:
    """Today's check: a blank form, or today's answers with "update?" when already given."""
    link, program = await _patient(request)
    today = program.today(request.app[CLOCK].now())
    async with request.app[ENGINE].connect() as conn:
        existing = await mood_store.entry_on(conn, request.app[KEYRING], link.patient_id, today)
    values = _values(existing.entry if existing else None)
    return await _form_page(request, link, program, values, existing=existing)


async def mood_submit(request: web.Request) -> web.Response:
    """Store today's check (sealed); a second one today replaces the first once confirmed."""
    form = await read_form(request)
    link, program = await _patient(request)
    keyring, now = request.app[KEYRING], request.app[CLOCK].now()
    today = program.today(now)
    values = {name: form.get(name, "").strip() for name in FIELDS}
    try:
        entry = parse_entry(form, today, substance_use=program.substance_use)
    except MoodInputError as exc:
        async with request.app[ENGINE].connect() as conn:
            existing = await mood_store.entry_on(conn, keyring, link.patient_id, today)
        return await _form_page(
            request, link, program, values, existing=existing, errors=exc.errors, status=400
        )
    reasons = review_reasons(entry)
    try:
        replaced = await _store(request, link, entry, reasons, form.get("replace") == "yes")
    except IntegrityError:
        # Two first checks of the day at once (two tabs): one was stored; ask about this one.
        replaced = None
    if replaced is None:
        async with request.app[ENGINE].connect() as conn:
            existing = await mood_store.entry_on(conn, keyring, link.patient_id, today)
        return await _form_page(
            request, link, program, values, existing=existing, confirm=True, status=409
        )
    log.info("mood.checked_in", patient_id=link.patient_id)
    context = {
        "review": bool(reasons),
        "replaced": replaced,
        "program_phone": link.program_phone,
    }
    return await render(request, "mood_done.html", context)


async def _store(
    request: web.Request, link: Any, entry: MoodEntry, reasons: tuple[str, ...], confirmed: bool
) -> bool | None:
    """Store the day's check and raise its review; None when one exists and the patient has
    not confirmed replacing it, else whether it replaced one."""
    keyring, now = request.app[KEYRING], request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        existing = await mood_store.entry_on(conn, keyring, link.patient_id, entry.day)
        if existing is not None and not confirmed:
            return None
        replaced = await mood_store.save_entry(conn, keyring, link.patient_id, entry, now)
        if reasons:
            await mood_store.raise_review(
                conn,
                keyring,
                patient_id=link.patient_id,
                link_session_id=link.session_id,
                entry=entry,
                reasons=reasons,
                now=now,
            )
        await audit_event(
            request,
            conn,
            "patient.mood_check",
            actor=audit.Actor("patient", link.patient_id),
            target_type="patient",
            target_id=link.patient_id,
            outcome="replaced" if replaced else "ok",
        )
    return replaced


# Admins: the daily reminder ------------------------------------------------------------------


async def _program(request: web.Request) -> dict[str, Any]:
    wanted = request.match_info["program_id"]
    found = [p for p in await visible_programs(request) if p["id"] == wanted]
    if not found:
        raise web.HTTPNotFound(reason="There is no such program.")
    return found[0]


async def _reminder_page(
    request: web.Request,
    program: dict[str, Any],
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    saved: bool = False,
) -> web.Response:
    context = {
        "program": program,
        "values": values,
        "errors": errors,
        "saved": saved,
        "review_at": MOOD_REVIEW_AT_OR_BELOW,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_mood.html", context, status)


@requires(Action.PROGRAMS_MANAGE)
async def reminder_page(request: web.Request) -> web.Response:
    """The program's daily mood check reminder: on or off, and its local time."""
    program = await _program(request)
    async with request.app[ENGINE].connect() as conn:
        setting = await mood_store.reminder_setting(conn, program["id"])
    values = {"enabled": setting.enabled, "reminder_time": setting.at.strftime("%H:%M")}
    return await _reminder_page(request, program, values, {})


@requires(Action.PROGRAMS_MANAGE)
async def reminder_submit(request: web.Request) -> web.Response:
    """Save the program's reminder setting."""
    form = await read_form(request)
    program = await _program(request)
    enabled = form.get("enabled") == "on"
    values = {"enabled": enabled, "reminder_time": form.get("reminder_time", "").strip()}
    try:
        at = parse_reminder_time(values["reminder_time"])
    except MoodInputError as exc:
        return await _reminder_page(request, program, values, exc.errors, 400)
    setting = mood_store.ReminderSetting(enabled, at)
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        await mood_store.set_reminder(
            conn, program["id"], setting, who.id, request.app[CLOCK].now()
        )
        await audit_event(
            request,
            conn,
            "program.mood_reminder_set",
            target_type="program",
            target_id=program["id"],
            detail={"enabled": enabled, "time": at.strftime("%H:%M")},
        )
    values["reminder_time"] = at.strftime("%H:%M")
    return await _reminder_page(request, program, values, {}, saved=True)


def add_routes(app: web.Application) -> None:
    """Register the daily mood check and its reminder setting."""
    app.router.add_get("/mood", mood_page)
    app.router.add_post("/mood", mood_submit)
    app.router.add_get("/admin/programs/{program_id}/mood", reminder_page)
    app.router.add_post("/admin/programs/{program_id}/mood", reminder_submit)
