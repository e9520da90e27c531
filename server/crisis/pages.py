"""The crisis event page: header, countdown, timeline, step forms, safety panel, break-glass.

`/crisis/events/{event_id}` is the deep link every notification points to. Only the people
on the event (`crisis_api.can_see`) open it; a supervisor who is not on it may break the
glass with a reason (CLINICAL.md section 8), which is audited loudly and reviewed later.
Every view of the safety panel writes an audit row naming the patient and the event.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis import ledger
from crisis.directory import EXAMPLE_MARK, format_phone
from crisis.safety_plan import STEPS as PLAN_STEPS
from rooms.schedule import zone
from server.accounts.auth import (
    StaffIdentity,
    audit_event,
    csrf_token,
    identity,
    read_form,
    requires,
)
from server.accounts.permissions import Action, Role, allowed
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.crisis import breakglass, safety_data
from server.crisis import store as crisis_store
from server.crisis import timeline as crisis_timeline
from server.crisis.api import can_see
from server.logs import get_logger
from server.render import render
from server.storage.tables import crisis_timers, groups, programs, sessions, staff

log = get_logger(__name__)
REVIEW_DAYS = 90
MEMBER = "member"
BREAK_GLASS = "break_glass"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One input of a step form."""

    name: str
    label: str
    kind: str = "text"  # text | tel | datetime | textarea | select | yesno | number
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()


def _choices(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((value, value.replace("_", " ")) for value in values)


NOTE = FieldSpec("note", "Note", "textarea")
# The staff-recorded steps, in the order a crisis usually runs; fields as crisis/ledger.py
# declares them (the ledger validates; these only lay the forms out).
STEP_FORMS: dict[str, tuple[str, tuple[FieldSpec, ...]]] = {
    ledger.CallLogged.KIND: (
        "Log an external call",
        (
            FieldSpec("number", "Number dialled", "tel", True),
            FieldSpec("agency", "Agency (e.g. county dispatch, mobile crisis, 988)", required=True),
            FieldSpec("incident_number", "Incident number"),
            FieldSpec("started_at", "Call started", "datetime", True),
            FieldSpec("ended_at", "Call ended", "datetime"),
            FieldSpec("outcome", "Outcome", "textarea"),
        ),
    ),
    ledger.SupportPersonContacted.KIND: (
        "Support person contacted",
        (
            FieldSpec("reached", "Reached them?", "yesno", True),
            FieldSpec("contacted_at", "When (blank: now)", "datetime"),
            NOTE,
        ),
    ),
    ledger.DropFollowUp.KIND: (
        "Dropped connection: step taken or skipped",
        (
            FieldSpec(
                "action",
                "Step",
                "select",
                True,
                (
                    ("call_back", "call back on the session phone"),
                    ("backup_phone", "call the backup or alternate phone"),
                    ("support_person", "call the support person"),
                    ("welfare_check", "welfare check through local dispatch"),
                ),
            ),
            FieldSpec("outcome", "Outcome", "select", True, _choices(ledger.DROP_OUTCOMES)),
            FieldSpec("reason", "Reason (required when skipped)", "textarea"),
            NOTE,
        ),
    ),
    ledger.Disposition.KIND: (
        "Disposition",
        (
            FieldSpec("disposition", "Disposition", "select", True, _choices(ledger.DISPOSITIONS)),
            NOTE,
        ),
    ),
    ledger.Part2Disclosure.KIND: (
        "42 CFR Part 2 medical-emergency disclosure",
        (
            FieldSpec("recipient", "Recipient (person)", required=True),
            FieldSpec("facility", "Facility", required=True),
            FieldSpec("disclosed_by", "Disclosed by", required=True),
            FieldSpec("disclosed_at", "Date and time of disclosure", "datetime", True),
            FieldSpec("nature_of_emergency", "Nature of the emergency", "textarea", True),
        ),
    ),
    ledger.TarasoffNotification.KIND: (
        "Duty to warn / protect (Tarasoff) notification",
        (
            FieldSpec("recipient", "Who was notified", required=True),
            FieldSpec("method", "How", "select", True, _choices(ledger.TARASOFF_METHODS)),
            FieldSpec("notified_at", "When", "datetime", True),
            NOTE,
        ),
    ),
    ledger.FollowUpTask.KIND: (
        "Follow-up task",
        (
            FieldSpec("due_at", "Due (default: in 24 hours)", "datetime"),
            FieldSpec("assignee_id", "Who follows up", "select"),
            NOTE,
        ),
    ),
    ledger.DebriefNote.KIND: (
        "Group debrief note",
        (FieldSpec("note", "What the group was told and how it went", "textarea", True),),
    ),
    ledger.Amendment.KIND: (
        "Amend an earlier step (the original stays)",
        (
            FieldSpec("amends", "Step number", "number", True),
            FieldSpec("reason", "Reason for the amendment", "textarea", True),
            FieldSpec("correction", "Correction", "textarea", True),
        ),
    ),
}
DATETIME_FORMAT = "%Y-%m-%dT%H:%M"


class FormError(Exception):
    """A submitted value that cannot even be handed to the ledger."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def step_data(
    kind: str, form: Any, time_zone: str, *, default_assignee: str = ""
) -> dict[str, Any]:
    """A step form's text as the ledger's field values (local times given their zone)."""
    _title, specs = STEP_FORMS[kind]
    data: dict[str, Any] = {}
    for spec in specs:
        raw = str(form.get(f"{kind}.{spec.name}", "")).strip()
        if spec.kind == "datetime":
            if not raw:
                continue
            try:
                moment = dt.datetime.fromisoformat(raw)
            except ValueError:
                raise FormError(spec.name, "a date and time, like 2026-12-01 18:30") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone(time_zone))
            data[spec.name] = moment.isoformat()
        elif spec.kind == "yesno":
            if raw not in ("yes", "no"):
                raise FormError(spec.name, "choose yes or no")
            data[spec.name] = raw == "yes"
        elif spec.kind == "number":
            if not raw.isdigit():
                raise FormError(spec.name, "a step number from the timeline")
            data[spec.name] = int(raw)
        elif spec.name == "assignee_id":
            data[spec.name] = raw or default_assignee
        elif raw:
            data[spec.name] = raw
    return data


# Access ------------------------------------------------------------------------------------


async def _access(
    conn: AsyncConnection, who: StaffIdentity, event: ledger.Event, now: dt.datetime
) -> tuple[str | None, dt.datetime | None]:
    """("member" | "break_glass" | None, when a break-glass grant ends)."""
    if await can_see(conn, who, event, now):
        return MEMBER, None
    if allowed(who.role, Action.CRISIS_BREAK_GLASS) and (
        who.role is Role.ADMIN or who.program_id == event.program_id
    ):
        until = await breakglass.active(conn, who.id, event.id, now)
        if until is not None:
            return BREAK_GLASS, until
    return None, None


async def _load_event(conn: AsyncConnection, event_id: str, *, lock: bool = False) -> ledger.Event:
    try:
        return await crisis_store.get_event(conn, event_id, lock=lock)
    except crisis_store.EventNotFoundError:
        raise web.HTTPNotFound(reason="There is no such crisis event.") from None


async def _refuse(request: web.Request, event: ledger.Event) -> web.Response:
    """403: the break-glass form for a supervisor of the program, a plain refusal otherwise."""
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        await audit_event(
            request,
            conn,
            "crisis.access_refused",
            target_type="crisis_event",
            target_id=event.id,
            outcome="denied",
        )
    may_break = allowed(who.role, Action.CRISIS_BREAK_GLASS) and (
        who.role is Role.ADMIN or who.program_id == event.program_id
    )
    if not may_break:
        raise web.HTTPForbidden(reason="Only the staff on this crisis event may open it.")
    return await _break_glass_form(request, event, {}, "")


async def _break_glass_form(
    request: web.Request, event: ledger.Event, errors: dict[str, str], reason: str
) -> web.Response:
    context = {
        "event": event,
        "errors": errors,
        "reason": reason,
        "csrf": await csrf_token(request),
        "minutes": request.app[SETTINGS].break_glass_minutes,
        "min_reason": breakglass.MIN_REASON,
        "max_reason": breakglass.MAX_REASON,
    }
    return await render(request, "crisis_break_glass.html", context, 422 if errors else 403)


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
        event = await _load_event(conn, request.match_info["event_id"])
        access, until = await _access(conn, who, event, now)
        if access is not None:
            context = await _context(request, conn, event, access, until)
    if access is None:
        return await _refuse(request, event)
    context["errors"] = errors or {}
    context["values"] = {**context["defaults"], **(values or {})}
    context["notice"] = notice
    return await render(request, "crisis_event.html", context, status)


@requires(Action.CRISIS_READ, phi=True)
async def event_page(request: web.Request) -> web.Response:
    """The event with its timeline, forms and the patient's safety panel (audited)."""
    return await _show(request)


async def _acting(request: web.Request, conn: AsyncConnection) -> ledger.Event:
    """The event, locked, when the caller is on it (or holds a break-glass grant)."""
    event = await _load_event(conn, request.match_info["event_id"], lock=True)
    access, _until = await _access(conn, identity(request), event, request.app[CLOCK].now())
    if access is None:
        raise web.HTTPForbidden(reason="Only the staff on this crisis event may act on it.")
    return event


def _back(event_id: str, anchor: str = "timeline") -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/crisis/events/{event_id}#{anchor}")


@requires(Action.CRISIS_ACT, phi=True)
async def acknowledge(request: web.Request) -> web.Response:
    """The caller takes the event by name; pending deadlines stop."""
    form = await read_form(request)
    note = str(form.get("acknowledged.note", "")).strip()
    who = identity(request)
    try:
        async with request.app[ENGINE].begin() as conn:
            event = await _acting(request, conn)
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
    raise _back(event.id)


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
            event = await _acting(request, conn)
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
    raise _back(event.id)


@requires(Action.CRISIS_SIGN_OFF, phi=True)
async def sign_off(request: web.Request) -> web.Response:
    """A supervisor's review closes the event."""
    form = await read_form(request)
    note = str(form.get("signed_off.note", "")).strip()
    who = identity(request)
    try:
        async with request.app[ENGINE].begin() as conn:
            event = await _acting(request, conn)
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
    raise _back(event.id)


# Break-glass ---------------------------------------------------------------------------------


@requires(Action.CRISIS_BREAK_GLASS, phi=True)
async def break_glass(request: web.Request) -> web.Response:
    """A supervisor not on the event opens its safety panel, with a reason (audited)."""
    form = await read_form(request)
    who = identity(request)
    now = request.app[CLOCK].now()
    raw = str(form.get("reason", ""))
    async with request.app[ENGINE].begin() as conn:
        event = await _load_event(conn, request.match_info["event_id"])
        if who.role is not Role.ADMIN and who.program_id != event.program_id:
            raise web.HTTPForbidden(reason="This event belongs to another program.")
        if await can_see(conn, who, event, now):
            raise _back(event.id, "safety")
    try:
        reason = breakglass.check_reason(raw)
    except breakglass.ReasonInvalid as exc:
        return await _break_glass_form(request, event, {"reason": str(exc)}, raw[:600])
    window = dt.timedelta(minutes=request.app[SETTINGS].break_glass_minutes)
    async with request.app[ENGINE].begin() as conn:
        grant_id = await breakglass.grant(
            conn,
            request.app[KEYRING],
            staff_id=who.id,
            event_id=event.id,
            program_id=event.program_id,
            patient_id=event.patient_id,
            reason=reason,
            now=now,
            window=window,
        )
        # The reason stays sealed in break_glass; the audit row names the grant, not the words.
        await audit_event(
            request,
            conn,
            "safety.break_glass",
            target_type="patient",
            target_id=event.patient_id,
            detail={
                "event_id": event.id,
                "grant_id": grant_id,
                "minutes": request.app[SETTINGS].break_glass_minutes,
            },
        )
    log.warning("safety.break_glass", event_id=event.id, user_id=who.id, grant_id=grant_id)
    raise _back(event.id, "safety")


@requires(Action.CRISIS_BREAK_GLASS, phi=True)
async def break_glass_review(request: web.Request) -> web.Response:
    """After-the-fact review: every break-glass opening in the last 90 days."""
    who = identity(request)
    now = request.app[CLOCK].now()
    scope = None if who.role is Role.ADMIN else [who.program_id]
    async with request.app[ENGINE].begin() as conn:
        found = await breakglass.uses(
            conn,
            request.app[KEYRING],
            scope,
            now - dt.timedelta(days=REVIEW_DAYS),
            with_reasons=True,
        )
        await audit_event(request, conn, "safety.break_glass_review", detail={"count": len(found)})
    if request.query.get("format") == "json":
        rows = [
            {**{k: v for k, v in row.items() if k != "reason"}, "at": row["at"].isoformat()}
            | {"expires_at": row["expires_at"].isoformat()}
            for row in found
        ]
        return web.json_response({"uses": rows})
    return await render(
        request, "crisis_break_glass_review.html", {"uses": found, "days": REVIEW_DAYS}
    )


def add_routes(app: web.Application) -> None:
    """Register the event page, its forms, break-glass and its review."""
    router = app.router
    router.add_get("/crisis/events/{event_id}", event_page)
    router.add_post("/crisis/events/{event_id}/ack", acknowledge)
    router.add_post("/crisis/events/{event_id}/steps", add_step)
    router.add_post("/crisis/events/{event_id}/signoff", sign_off)
    router.add_post("/crisis/events/{event_id}/break-glass", break_glass)
    router.add_get("/crisis/break-glass", break_glass_review)
