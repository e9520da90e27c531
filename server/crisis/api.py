"""The crisis JSON API: flag, acknowledge, record steps, assign, sign off, read.

Routes are thin: role checks come from server/accounts/permissions.py through `requires`, and
"is this person on this event" from `can_see`. A patient's crisis record is shown only to
the people on the event (CLINICAL.md section 8), and every read is audited.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from aiohttp import web
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis import ledger
from crisis.escalation import Concern, raise_concern
from server.accounts.auth import StaffIdentity, audit_event, identity, requires
from server.accounts.permissions import Action, Role
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.catalog.api import parse_body
from server.catalog.schemas import Id, Strict
from server.crisis import oncall
from server.crisis import publish as crisis_publish
from server.crisis import store as crisis_store
from server.crisis import timeline as crisis_timeline
from server.crisis.concerns import SqlConcerns
from server.logs import get_logger
from server.middleware import ApiError
from server.storage.tables import appointments, crisis_steps, group_members, patients, sessions

log = get_logger(__name__)
NOTE = Field(default="", max_length=ledger.MAX_NOTE)
REPORT_DEFAULT_DAYS = 30


class FlagIn(Strict):
    patient_id: Id
    session_id: Id
    level: Literal["moderate", "high"]
    note: str = NOTE


class NoteIn(Strict):
    note: str = NOTE


class AssignIn(Strict):
    staff_id: Id
    note: str = NOTE


class StepIn(Strict):
    kind: str = Field(max_length=40)
    fields: dict[str, Any] = Field(default_factory=dict)


def _step_error(exc: ledger.InvalidStepError) -> ApiError:
    return ApiError(422, "invalid_input", exc.reason, [{"field": exc.field, "message": exc.reason}])


def _state_error(exc: ledger.InvalidStateError) -> ApiError:
    return ApiError(409, "conflict", str(exc))


# Who is on an event ------------------------------------------------------------------------


async def can_see(
    conn: AsyncConnection, who: StaffIdentity, event: ledger.Event, now: dt.datetime
) -> bool:
    """Admins, the session's clinicians, the program's on-call staff, and whoever took it."""
    if who.role is Role.ADMIN:
        return True
    if who.id in (event.acknowledged_by, event.signed_off_by):
        return True
    clinicians = await oncall.session_clinicians(conn, event.session_id)
    if who.id in clinicians.values():
        return True
    return event.program_id in await oncall.on_call_anywhere(conn, who.id, now)


async def _event_for(
    request: web.Request, conn: AsyncConnection, *, lock: bool = False
) -> ledger.Event:
    event_id = request.match_info["event_id"]
    try:
        event = await crisis_store.get_event(conn, event_id, lock=lock)
    except crisis_store.EventNotFoundError:
        raise web.HTTPNotFound(reason="no such crisis event") from None
    if not await can_see(conn, identity(request), event, request.app[CLOCK].now()):
        # Its own transaction: the caller's is rolled back by the refusal below.
        async with request.app[ENGINE].begin() as audit_conn:
            await audit_event(
                request,
                audit_conn,
                "crisis.access_refused",
                target_type="crisis_event",
                target_id=event.id,
                outcome="denied",
            )
        raise web.HTTPForbidden(reason="only the staff on this event may see or act on it")
    return event


async def _patient_session_program(
    conn: AsyncConnection, patient_id: str, session_id: str
) -> tuple[str, dt.datetime] | None:
    """(program id, session end) when the patient belongs to the session, else None."""
    session = (await conn.execute(sa.select(sessions).where(sessions.c.id == session_id))).first()
    if session is None:
        return None
    if session.group_id is not None:
        member = await conn.scalar(
            sa.select(group_members.c.patient_id).where(
                group_members.c.group_id == session.group_id,
                group_members.c.patient_id == patient_id,
            )
        )
    else:
        member = await conn.scalar(
            sa.select(appointments.c.patient_id).where(
                appointments.c.id == session.appointment_id,
                appointments.c.patient_id == patient_id,
            )
        )
    program = await conn.scalar(sa.select(patients.c.program_id).where(patients.c.id == patient_id))
    if member is None or program != session.program_id:
        return None
    return session.program_id, session.ends_at


# Events ------------------------------------------------------------------------------------


@requires(Action.CRISIS_RAISE)
async def flag(request: web.Request) -> web.Response:
    """A clinician's flag: raises a concern through the one crisis entry point."""
    body = await parse_body(request, FlagIn)
    who = identity(request)
    now = request.app[CLOCK].now()
    async with crisis_publish.transaction(request.app) as conn:
        found = await _patient_session_program(conn, body.patient_id, body.session_id)
        if found is None:
            raise web.HTTPNotFound(reason="no such patient in that session")
        program_id, ends_at = found
        clinicians = await oncall.session_clinicians(conn, body.session_id)
        allowed = (
            who.role is Role.ADMIN
            or who.id in clinicians.values()
            or (who.role is Role.SUPERVISOR and who.program_id == program_id)
        )
        if not allowed:
            raise web.HTTPForbidden(reason="only staff of this session may flag its patients")
        concern = Concern(
            patient_id=body.patient_id,
            session_id=body.session_id,
            trigger="clinician_flag",
            level=body.level,
            rule="flagged by staff",
            at=now,
            detail={"note": body.note} if body.note else {},
            raised_by=who.id,
        )
        outcome = await raise_concern(SqlConcerns(conn, request.app[KEYRING], ends_at), concern)
        await audit_event(
            request,
            conn,
            "crisis.flagged",
            target_type="crisis_event",
            target_id=outcome.id,
            detail={"level": body.level},
        )
    log.warning("crisis.flagged", session_id=body.session_id, event_id=outcome.id)
    return web.json_response({"outcome": outcome.kind, "event_id": outcome.id}, status=201)


@requires(Action.CRISIS_READ)
async def list_events(request: web.Request) -> web.Response:
    """Open events the caller is on (ids, level, state and times only)."""
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        scope = None if who.role is Role.ADMIN else [who.program_id]
        events = await crisis_store.open_events_for_programs(conn, scope)
        visible = [event.to_json() for event in events if await can_see(conn, who, event, now)]
    return web.json_response({"events": visible})


@requires(Action.CRISIS_READ, phi=True)
async def get_event(request: web.Request) -> web.Response:
    """One event with its whole timeline; the read is audited."""
    async with request.app[ENGINE].begin() as conn:
        event = await _event_for(request, conn)
        steps = await crisis_timeline.timeline(conn, request.app[KEYRING], event.id)
        await audit_event(
            request, conn, "crisis.timeline_read", target_type="crisis_event", target_id=event.id
        )
    return web.json_response({"event": event.to_json(), "timeline": steps})


@requires(Action.CRISIS_READ)
async def event_version(request: web.Request) -> web.Response:
    """The event's state and how many steps it has (no PHI): an open event page polls this
    to tell its reader that someone else acknowledged, paged or added a step."""
    async with request.app[ENGINE].connect() as conn:
        event = await _event_for(request, conn)
        steps = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(crisis_steps)
            .where(crisis_steps.c.event_id == event.id)
        )
    return web.json_response({"state": event.state, "steps": int(steps or 0)})


@requires(Action.CRISIS_ACT)
async def acknowledge(request: web.Request) -> web.Response:
    """The caller takes the event, by name; pending deadlines stop."""
    body = await parse_body(request, NoteIn)
    who = identity(request)
    async with crisis_publish.transaction(request.app) as conn:
        event = await _event_for(request, conn, lock=True)
        try:
            done = await crisis_store.acknowledge(
                conn, request.app[KEYRING], event.id, who.actor, request.app[CLOCK].now(), body.note
            )
        except ledger.InvalidStateError as exc:
            raise _state_error(exc) from None
        await audit_event(
            request, conn, "crisis.acknowledged", target_type="crisis_event", target_id=event.id
        )
    log.info("crisis.acknowledged", event_id=event.id, user_id=who.id)
    return web.json_response({"event": done.to_json()})


@requires(Action.CRISIS_ACT)
async def add_step(request: web.Request) -> web.Response:
    """Record a step on the timeline: a call, a disposition, a note, an amendment..."""
    body = await parse_body(request, StepIn)
    who = identity(request)
    async with request.app[ENGINE].begin() as conn:
        event = await _event_for(request, conn, lock=True)
        try:
            step_no = await crisis_store.record_step(
                conn,
                request.app[KEYRING],
                event.id,
                body.kind,
                body.fields,
                who.actor,
                request.app[CLOCK].now(),
            )
        except ledger.InvalidStepError as exc:
            raise _step_error(exc) from None
        except ledger.InvalidStateError as exc:
            raise _state_error(exc) from None
        await audit_event(
            request,
            conn,
            "crisis.step_recorded",
            target_type="crisis_event",
            target_id=event.id,
            detail={"kind": body.kind, "step_no": step_no},
        )
    return web.json_response({"event_id": event.id, "step_no": step_no}, status=201)


@requires(Action.CRISIS_SIGN_OFF)
async def sign_off(request: web.Request) -> web.Response:
    """A supervisor's review closes the event."""
    body = await parse_body(request, NoteIn)
    who = identity(request)
    async with crisis_publish.transaction(request.app) as conn:
        event = await _event_for(request, conn, lock=True)
        try:
            done = await crisis_store.sign_off(
                conn, request.app[KEYRING], event.id, who.actor, request.app[CLOCK].now(), body.note
            )
        except ledger.InvalidStateError as exc:
            raise _state_error(exc) from None
        await audit_event(
            request, conn, "crisis.signed_off", target_type="crisis_event", target_id=event.id
        )
    return web.json_response({"event": done.to_json()})


@requires(Action.CRISIS_ACT)
async def assign(request: web.Request) -> web.Response:
    """Take the event over (your own id) or hand it to another clinician or on-call staff."""
    body = await parse_body(request, AssignIn)
    who = identity(request)
    async with crisis_publish.transaction(request.app) as conn:
        event = await _event_for(request, conn, lock=True)
        try:
            done = await crisis_store.assign(
                conn,
                request.app[KEYRING],
                event.id,
                body.staff_id,
                who.actor,
                request.app[CLOCK].now(),
                body.note,
            )
        except crisis_store.AssignmentError as exc:
            raise ApiError(
                422, "invalid_input", exc.reason, [{"field": "staff_id", "message": exc.reason}]
            ) from None
        except ledger.InvalidStateError as exc:
            raise _state_error(exc) from None
        await audit_event(
            request,
            conn,
            "crisis.assigned",
            target_type="crisis_event",
            target_id=event.id,
            detail={"staff_id": body.staff_id},
        )
    return web.json_response({"event": done.to_json(), "assigned_to": body.staff_id})


def _time_param(query: Any, name: str, default: dt.datetime) -> dt.datetime:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        message = "must be a date and time with an offset, like 2026-12-01T00:00:00+00:00"
        raise ApiError(400, "invalid_input", message, [{"field": name, "message": message}])
    return value


@requires(Action.CRISIS_REPORT)
async def breaches(request: web.Request) -> web.Response:
    """Missed acknowledgement deadlines in a window (default: the last 30 days)."""
    who = identity(request)
    now = request.app[CLOCK].now()
    since = _time_param(request.query, "since", now - dt.timedelta(days=REPORT_DEFAULT_DAYS))
    until = _time_param(request.query, "until", now + dt.timedelta(seconds=1))
    async with request.app[ENGINE].begin() as conn:
        scope = None if who.role is Role.ADMIN else [who.program_id]
        found = await crisis_timeline.breaches(conn, request.app[KEYRING], scope, since, until)
        await audit_event(request, conn, "crisis.breaches_read", detail={"count": len(found)})
    return web.json_response({"breaches": found})


def add_routes(app: web.Application) -> None:
    """Register the crisis API."""
    app.router.add_post("/api/crisis/events", flag)
    app.router.add_get("/api/crisis/events", list_events)
    app.router.add_get("/api/crisis/events/{event_id}", get_event)
    app.router.add_get("/api/crisis/events/{event_id}/version", event_version)
    app.router.add_post("/api/crisis/events/{event_id}/ack", acknowledge)
    app.router.add_post("/api/crisis/events/{event_id}/steps", add_step)
    app.router.add_post("/api/crisis/events/{event_id}/assign", assign)
    app.router.add_post("/api/crisis/events/{event_id}/signoff", sign_off)
    app.router.add_get("/api/crisis/breaches", breaches)
