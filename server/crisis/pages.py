"""The crisis event page: header, countdown, timeline, step forms, safety panel.

`/crisis/events/{event_id}` is the deep link every notification points to. Who may open it
is event_access.py's to say; the forms' fields are step_forms.py's; break-glass has its own
pages. Every view of the safety panel writes an audit row naming the patient and the event.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis import ledger
from crisis.directory import EXAMPLE_MARK, format_phone
from crisis.safety_plan import STEPS as PLAN_STEPS
from rooms.schedule import zone
from server.accounts.auth import (
    audit_event,
    csrf_token,
    identity,
    read_form,
    requires,
)
from server.accounts.permissions import Action, allowed
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.crisis import safety_data
from server.crisis import store as crisis_store
from server.crisis import timeline as crisis_timeline
from server.crisis.breakglass_pages import break_glass, break_glass_review
from server.crisis.event_access import access_to, acting, back, load_event, refuse
from server.crisis.step_forms import DATETIME_FORMAT, STEP_FORMS, FormError, step_data
from server.logs import get_logger
from server.render import render
from server.storage.tables import crisis_timers, groups, programs, sessions, staff

log = get_logger(__name__)

# The page ----------------------------------------------------------------------------------


def tel_href(number: str | None) -> str:
    """A `tel:` URI for a number as people write it (digits, and + for international)."""
    if not number:
        return ""
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.strip().startswith("+"):
        return f"tel:+{digits}"
    if len(digits) == 10:
        return f"tel:+1{digits}"
    return f"tel:{digits}"


async def _names(conn: AsyncConnection, staff_ids: set[str]) -> dict[str, str]:
    if not staff_ids:
        return {}
    rows = await conn.execute(
        sa.select(staff.c.id, staff.c.display_name).where(staff.c.id.in_(staff_ids))
    )
    return {row.id: row.display_name for row in rows}


async def _pending_deadline(conn: AsyncConnection, event_id: str) -> Any:
    return (
        await conn.execute(
            sa.select(crisis_timers.c.purpose, crisis_timers.c.due_at)
            .where(
                crisis_timers.c.event_id == event_id,
                crisis_timers.c.fired_at.is_(None),
                crisis_timers.c.cancelled_at.is_(None),
            )
            .order_by(crisis_timers.c.due_at)
            .limit(1)
        )
    ).first()


def _local_directory(info: Any) -> list[dict[str, Any]]:
    rows = []
    for resolved in info.local:
        entry = resolved.entry
        rows.append(
            {
                "area": entry.area,
                "matched_by": resolved.matched_by,
                "example": entry.example,
                "stale": resolved.stale,
                "age_days": resolved.age_days,
                "verified_on": entry.verified_on.isoformat(),
                "owner": entry.owner,
                "psap_phone": entry.psap_phone,
                "crisis_line": entry.crisis_line,
                "mobile_crisis": entry.mobile_crisis,
                "ed_name": entry.ed_name,
                "ed_address": entry.ed_address,
                "ed_phone": entry.ed_phone,
                "police_nonemergency": entry.police_nonemergency,
            }
        )
    return rows


async def _context(
    request: web.Request,
    conn: AsyncConnection,
    event: ledger.Event,
    access: str,
    grant_until: dt.datetime | None,
) -> dict[str, Any]:
    who = identity(request)
    now = request.app[CLOCK].now()
    keyring = request.app[KEYRING]
    settings = request.app[SETTINGS]
    session = (
        await conn.execute(
            sa.select(sessions, groups.c.name.label("group_name"))
            .outerjoin(groups, groups.c.id == sessions.c.group_id)
            .where(sessions.c.id == event.session_id)
        )
    ).one()
    program = (
        await conn.execute(
            sa.select(programs.c.kind, programs.c.time_zone).where(
                programs.c.id == event.program_id
            )
        )
    ).one()
    names = await catalog_patients.display_names(conn, keyring, [event.patient_id])
    steps = await crisis_timeline.timeline(conn, keyring, event.id)
    actors = {s["actor_id"] for s in steps if s["actor_type"] == "staff" and s["actor_id"]}
    actors |= {x for x in (event.acknowledged_by, event.signed_off_by) if x}
    program_staff = await catalog.list_staff(conn, event.program_id)
    staff_names = await _names(conn, actors) | {s["id"]: s["display_name"] for s in program_staff}
    deadline = await _pending_deadline(conn, event.id) if event.state == "open" else None
    safety = await safety_data.load(
        conn,
        keyring,
        event.patient_id,
        event.session_id,
        await catalog.program_today(conn, event.program_id, now),
        stale_days=settings.directory_stale_days,
    )
    await audit_event(
        request, conn, "crisis.timeline_read", target_type="crisis_event", target_id=event.id
    )
    # The safety panel is a read of the patient's safety data: one row per view, naming the
    # patient and the event (ids only; the values never leave the page).
    await audit_event(
        request,
        conn,
        "safety.view",
        target_type="patient",
        target_id=event.patient_id,
        detail={"event_id": event.id, "access": access},
    )
    tz = zone(program.time_zone)
    substance_use = program.kind == "substance_use"
    forms = [
        (kind, title, specs)
        for kind, (title, specs) in STEP_FORMS.items()
        if kind != ledger.Part2Disclosure.KIND or substance_use
    ]
    defaults = {
        f"{ledger.FollowUpTask.KIND}.due_at": (now + ledger.FOLLOW_UP_DEFAULT)
        .astimezone(tz)
        .strftime(DATETIME_FORMAT),
        f"{ledger.FollowUpTask.KIND}.assignee_id": who.id,
        f"{ledger.CallLogged.KIND}.started_at": now.astimezone(tz).strftime(DATETIME_FORMAT),
    }
    return {
        "who": who,
        "event": event,
        "access": access,
        "grant_until": grant_until,
        "patient_name": names.get(event.patient_id, "a patient"),
        "session": session,
        "session_title": session.group_name or "One-on-one session",
        "tz": tz,
        "steps": steps,
        "staff_names": staff_names,
        "program_staff": program_staff,
        "deadline": deadline,
        "deadline_left": (
            None if deadline is None else int((deadline.due_at - now).total_seconds())
        ),
        "forms": forms,
        "defaults": defaults,
        "substance_use": substance_use,
        "safety": safety,
        "plan_steps": PLAN_STEPS,
        "local": _local_directory(safety.local),
        "national": safety.local.national,
        "example_mark": EXAMPLE_MARK,
        "stale_days": settings.directory_stale_days,
        "format_phone": format_phone,
        "tel_href": tel_href,
        "can_sign_off": allowed(who.role, Action.CRISIS_SIGN_OFF),
        "csrf": await csrf_token(request),
    }


async def _show(
    request: web.Request,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> web.Response:
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        event = await load_event(conn, request.match_info["event_id"])
        access, until = await access_to(conn, who, event, now)
        if access is not None:
            context = await _context(request, conn, event, access, until)
    if access is None:
        return await refuse(request, event)
    context["errors"] = errors or {}
    context["values"] = {**context["defaults"], **(values or {})}
    context["notice"] = notice
    return await render(request, "crisis_event.html", context, status)


@requires(Action.CRISIS_READ, phi=True)
async def event_page(request: web.Request) -> web.Response:
    """The event with its timeline, forms and the patient's safety panel (audited)."""
    return await _show(request)


@requires(Action.CRISIS_ACT, phi=True)
async def acknowledge(request: web.Request) -> web.Response:
    """The caller takes the event by name; pending deadlines stop."""
    form = await read_form(request)
    note = str(form.get("acknowledged.note", "")).strip()
    who = identity(request)
    try:
        async with request.app[ENGINE].begin() as conn:
            event = await acting(request, conn)
            await crisis_store.acknowledge(
                conn, request.app[KEYRING], event.id, who.actor, request.app[CLOCK].now(), note
            )
            await audit_event(
                request, conn, "crisis.acknowledged", target_type="crisis_event", target_id=event.id
            )
    except ledger.InvalidStepError as exc:
        return await _show(request, errors={"acknowledged": {exc.field: exc.reason}}, status=422)
    except ledger.InvalidStateError as exc:
        return await _show(request, notice=str(exc), status=409)
    log.info("crisis.acknowledged", event_id=event.id, user_id=who.id)
    raise back(event.id)


@requires(Action.CRISIS_ACT, phi=True)
async def add_step(request: web.Request) -> web.Response:
    """Record one step from its form; errors come back beside the fields."""
    form = await read_form(request)
    kind = str(form.get("kind", ""))
    if kind not in STEP_FORMS:
        raise web.HTTPBadRequest(reason="Unknown kind of step.")
    who = identity(request)
    values = {key: str(value) for key, value in form.items() if key.startswith(f"{kind}.")}
    try:
        async with request.app[ENGINE].begin() as conn:
            event = await acting(request, conn)
            time_zone = await conn.scalar(
                sa.select(programs.c.time_zone).where(programs.c.id == event.program_id)
            )
            data = step_data(kind, form, str(time_zone), default_assignee=who.id)
            step_no = await crisis_store.record_step(
                conn,
                request.app[KEYRING],
                event.id,
                kind,
                data,
                who.actor,
                request.app[CLOCK].now(),
            )
            await audit_event(
                request,
                conn,
                "crisis.step_recorded",
                target_type="crisis_event",
                target_id=event.id,
                detail={"kind": kind, "step_no": step_no},
            )
    except (FormError, ledger.InvalidStepError) as exc:
        return await _show(
            request, errors={kind: {exc.field: exc.reason}}, values=values, status=422
        )
    except ledger.InvalidStateError as exc:
        return await _show(request, notice=str(exc), values=values, status=409)
    raise back(event.id)


@requires(Action.CRISIS_SIGN_OFF, phi=True)
async def sign_off(request: web.Request) -> web.Response:
    """A supervisor's review closes the event."""
    form = await read_form(request)
    note = str(form.get("signed_off.note", "")).strip()
    who = identity(request)
    try:
        async with request.app[ENGINE].begin() as conn:
            event = await acting(request, conn)
            await crisis_store.sign_off(
                conn, request.app[KEYRING], event.id, who.actor, request.app[CLOCK].now(), note
            )
            await audit_event(
                request, conn, "crisis.signed_off", target_type="crisis_event", target_id=event.id
            )
    except ledger.InvalidStepError as exc:
        return await _show(request, errors={"signed_off": {exc.field: exc.reason}}, status=422)
    except ledger.InvalidStateError as exc:
        return await _show(request, notice=str(exc), status=409)
    raise back(event.id)


def add_routes(app: web.Application) -> None:
    """Register the event page, its forms, break-glass and its review."""
    router = app.router
    router.add_get("/crisis/events/{event_id}", event_page)
    router.add_post("/crisis/events/{event_id}/ack", acknowledge)
    router.add_post("/crisis/events/{event_id}/steps", add_step)
    router.add_post("/crisis/events/{event_id}/signoff", sign_off)
    router.add_post("/crisis/events/{event_id}/break-glass", break_glass)
    router.add_get("/crisis/break-glass", break_glass_review)
