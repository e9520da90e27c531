"""Crisis events in storage: raising, folding and acting on them, and finding open ones.

Every function runs inside the caller's transaction. Changes to one event take that
event's row lock first (`FOR UPDATE` on PostgreSQL; SQLite's single writer otherwise), so
an acknowledgement and a firing deadline never both win. The timeline, the deadlines and
the outbox each have their own module beside this one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis import ledger, routing
from crisis.escalation import Concern
from crisis.ledger import Event, Step
from server import audit
from server.catalog.store import new_id
from server.crisis import deadlines, oncall
from server.crisis.outbox import enqueue
from server.crisis.timeline import append_step, append_steps, step_context
from server.phi import Keyring
from server.storage.tables import (
    crisis_events,
    crisis_head,
    crisis_steps,
    programs,
    sessions,
    staff,
)


class EventNotFoundError(Exception):
    """No crisis event has that id."""


def _event(row: Any) -> Event:
    return Event(
        id=row.id,
        program_id=row.program_id,
        session_id=row.session_id,
        patient_id=row.patient_id,
        trigger=row.trigger,
        level=row.level,
        state=row.state,
        raised_at=row.raised_at,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        signed_off_at=row.signed_off_at,
        signed_off_by=row.signed_off_by,
    )


async def get_event(conn: AsyncConnection, event_id: str, *, lock: bool = False) -> Event:
    """One event's header; `lock` holds its row until the transaction ends."""
    query = sa.select(crisis_events).where(crisis_events.c.id == event_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise EventNotFoundError(event_id)
    return _event(row)


# Paging ------------------------------------------------------------------------------------


async def holders_of(conn: AsyncConnection, event: Event, at: dt.datetime) -> dict[str, str | None]:
    """Who is on the event by role: the session's clinicians and the program's on-call staff."""
    return await oncall.session_clinicians(conn, event.session_id) | await oncall.on_call(
        conn, event.program_id, at
    )


async def _page(
    conn: AsyncConnection,
    keyring: Keyring,
    event: Event,
    roles: tuple[str, ...],
    reason: str,
    at: dt.datetime,
    kind: str,
    holders: dict[str, str | None] | None = None,
) -> None:
    holders = holders if holders is not None else await holders_of(conn, event, at)
    # Recorded even when the roster names nobody: an empty rota is itself a finding.
    notified: list[tuple[Step, audit.Actor]] = [
        (ledger.Notified(role, holders.get(role), reason), audit.SYSTEM) for role in roles
    ]
    if notified:
        await append_steps(conn, keyring, event.id, notified, at)
    await enqueue(conn, event, kind, roles, at)


# Raising -----------------------------------------------------------------------------------


def _raiser(concern: Concern) -> audit.Actor:
    if concern.raised_by is not None:
        return audit.Actor("staff", concern.raised_by)
    if concern.trigger in ("screening", "help_button"):
        return audit.Actor("patient", concern.patient_id)
    return audit.SYSTEM


async def open_event(conn: AsyncConnection, keyring: Keyring, concern: Concern) -> str:
    """Open an event for a moderate or high concern, or add it to the patient's open one."""
    # Take the chain head's lock before looking for an open event: two concerns about the
    # same patient arriving together (help button during a high screen) then line up, and
    # the second finds the first's event instead of opening another.
    await conn.execute(
        crisis_head.update().where(crisis_head.c.id == 1).values(seq=crisis_head.c.seq)
    )
    at = concern.at
    existing = (
        await conn.execute(
            sa.select(crisis_events)
            .where(
                crisis_events.c.patient_id == concern.patient_id,
                crisis_events.c.session_id == concern.session_id,
                crisis_events.c.state != "closed",
            )
            .with_for_update()
        )
    ).first()
    if existing is not None:
        await _add_concern(conn, keyring, _event(existing), concern)
        return str(existing.id)
    program_id = await conn.scalar(
        sa.select(sessions.c.program_id).where(sessions.c.id == concern.session_id)
    )
    if program_id is None:
        raise EventNotFoundError(f"session {concern.session_id}")
    event = Event(
        id=new_id(),
        program_id=program_id,
        session_id=concern.session_id,
        patient_id=concern.patient_id,
        trigger=concern.trigger,
        level=concern.level,
        state="open",
        raised_at=at,
    )
    await conn.execute(
        crisis_events.insert().values(
            id=event.id,
            program_id=event.program_id,
            session_id=event.session_id,
            patient_id=event.patient_id,
            trigger=event.trigger,
            level=event.level,
            state="open",
            raised_at=at,
        )
    )
    raised = ledger.Raised(concern.trigger, concern.level, concern.rule, dict(concern.detail))
    policy = await oncall.policy_for(conn, program_id)
    first = policy.for_level(event.level).first
    holders = await holders_of(conn, event, at)
    # The raise and its first pages in one append: same steps, fewer statements.
    await append_steps(
        conn,
        keyring,
        event.id,
        [
            (raised, _raiser(concern)),
            *((ledger.Notified(role, holders.get(role), "raised"), audit.SYSTEM) for role in first),
        ],
        at,
    )
    await enqueue(conn, event, "raised", first, at)
    await deadlines.arm(conn, event, policy, at)
    return event.id


async def fold_concern(conn: AsyncConnection, keyring: Keyring, concern: Concern) -> str:
    """A repeat past the help rate: a step on the patient's open event without new pages.

    With no open event (it was signed off meanwhile), or at a level above the event's, the
    concern goes the whole way, as `open_event` takes it: a press is never lost.
    """
    await conn.execute(
        crisis_head.update().where(crisis_head.c.id == 1).values(seq=crisis_head.c.seq)
    )
    existing = (
        await conn.execute(
            sa.select(crisis_events)
            .where(
                crisis_events.c.patient_id == concern.patient_id,
                crisis_events.c.session_id == concern.session_id,
                crisis_events.c.state != "closed",
            )
            .with_for_update()
        )
    ).first()
    if existing is None or routing.more_urgent(concern.level, existing.level):
        return await open_event(conn, keyring, concern)
    added = ledger.ConcernAdded(concern.trigger, concern.level, concern.rule, dict(concern.detail))
    await append_step(conn, keyring, existing.id, added, _raiser(concern), concern.at)
    return str(existing.id)


async def _add_concern(
    conn: AsyncConnection, keyring: Keyring, event: Event, concern: Concern
) -> None:
    at = concern.at
    added = ledger.ConcernAdded(concern.trigger, concern.level, concern.rule, dict(concern.detail))
    await append_step(conn, keyring, event.id, added, _raiser(concern), at)
    if not routing.more_urgent(concern.level, event.level):
        await enqueue(conn, event, "concern_added", (), at)
        return
    await conn.execute(
        crisis_events.update().where(crisis_events.c.id == event.id).values(level=concern.level)
    )
    await append_step(
        conn, keyring, event.id, ledger.LevelRaised(event.level, concern.level), audit.SYSTEM, at
    )
    raised = replace(event, level=concern.level)
    if event.state != "open":
        # Someone already has it; tell them it got worse, without restarting the ladder.
        await enqueue(conn, raised, "concern_added", (), at)
        return
    # Still unacknowledged: the new level's (shorter) ladder replaces the old one from now.
    await deadlines.cancel_pending(conn, event.id, at)
    policy = await oncall.policy_for(conn, event.program_id)
    await _page(
        conn, keyring, raised, policy.for_level(raised.level).first, "level_raised", at, "raised"
    )
    await deadlines.arm(conn, raised, policy, at)


# Acting on an event ------------------------------------------------------------------------


async def acknowledge(
    conn: AsyncConnection,
    keyring: Keyring,
    event_id: str,
    actor: audit.Actor,
    now: dt.datetime,
    note: str = "",
) -> Event:
    """A named staff member takes the event: pending deadlines are cancelled."""
    event = await get_event(conn, event_id, lock=True)
    ledger.check_can_acknowledge(event.state)
    step = ledger.Acknowledged.parse({"note": note} if note else {}, now)
    await conn.execute(
        crisis_events.update()
        .where(crisis_events.c.id == event_id)
        .values(state="acknowledged", acknowledged_at=now, acknowledged_by=actor.id)
    )
    await deadlines.cancel_pending(conn, event_id, now)
    await append_step(conn, keyring, event_id, step, actor, now)
    acknowledged = replace(
        event, state="acknowledged", acknowledged_at=now, acknowledged_by=actor.id
    )
    await enqueue(conn, acknowledged, "acknowledged", (), now)
    return acknowledged


class AssignmentError(Exception):
    """An assignment that cannot be made; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def assignees(conn: AsyncConnection, keyring: Keyring, events: list[Event]) -> dict[str, str]:
    """Who carries each event now: its last `assigned` step, else whoever acknowledged it."""
    out = {event.id: event.acknowledged_by for event in events if event.acknowledged_by}
    if not events:
        return out
    steps = await conn.execute(
        sa.select(crisis_steps.c.event_id, crisis_steps.c.seq, crisis_steps.c.payload_enc)
        .where(
            crisis_steps.c.event_id.in_([event.id for event in events]),
            crisis_steps.c.kind == ledger.Assigned.KIND,
        )
        .order_by(crisis_steps.c.seq)
    )
    for row in steps:
        payload = json.loads(keyring.open(row.payload_enc, context=step_context(row.seq)))
        out[row.event_id] = payload["staff_id"]
    return out


async def assignable(
    conn: AsyncConnection,
    event: Event,
    at: dt.datetime,
    holders: dict[str, str | None] | None = None,
) -> dict[str, str]:
    """Staff an event may be handed to, by id -> role: its clinicians and who is on call."""
    if holders is None:
        holders = await holders_of(conn, event, at)
    out: dict[str, str] = {}
    for role, staff_id in holders.items():
        if staff_id is not None and staff_id not in out:
            out[staff_id] = role
    if not out:
        return out
    active = await conn.execute(
        sa.select(staff.c.id).where(
            staff.c.id.in_(list(out)),
            staff.c.disabled.is_(False),
            staff.c.program_id == event.program_id,
        )
    )
    keep = {row.id for row in active}
    return {staff_id: role for staff_id, role in out.items() if staff_id in keep}


async def assign(
    conn: AsyncConnection,
    keyring: Keyring,
    event_id: str,
    staff_id: str,
    actor: audit.Actor,
    now: dt.datetime,
    note: str = "",
) -> Event:
    """Hand the event to `staff_id` (take it over when that is the actor).

    Taking over an unacknowledged event acknowledges it by name first: whoever carries an
    event has taken it. Handing it to someone else is limited to the session's clinicians
    and the program's on-call staff, who are on the event already.
    """
    event = await get_event(conn, event_id, lock=True)
    ledger.check_can_assign(event.state)
    if staff_id != actor.id:
        if staff_id not in await assignable(conn, event, now):
            raise AssignmentError("hand it only to this session's clinicians or who is on call")
        if event.state == "open":
            raise AssignmentError("acknowledge the event before handing it to someone else")
    previous = (await assignees(conn, keyring, [event])).get(event_id)
    if previous == staff_id:
        raise AssignmentError("that person already has this event")
    if event.state == "open":
        event = await acknowledge(conn, keyring, event_id, actor, now)
    step = ledger.Assigned.parse(
        {"staff_id": staff_id, "previous": previous, **({"note": note} if note else {})}, now
    )
    await append_step(conn, keyring, event_id, step, actor, now)
    await enqueue(conn, event, "assigned", (), now)
    return event


async def record_step(
    conn: AsyncConnection,
    keyring: Keyring,
    event_id: str,
    kind: str,
    data: dict[str, Any],
    actor: audit.Actor,
    now: dt.datetime,
) -> int:
    """Validate and append a staff-recorded step (call, disposition, note, amendment...)."""
    event = await get_event(conn, event_id, lock=True)
    program_kind = await conn.scalar(
        sa.select(programs.c.kind).where(programs.c.id == event.program_id)
    )
    step = ledger.parse_staff_step(kind, data, now, substance_use=program_kind == "substance_use")
    last = await conn.scalar(
        sa.select(sa.func.max(crisis_steps.c.step_no)).where(crisis_steps.c.event_id == event_id)
    )
    ledger.check_can_append(event.state, step, int(last or 0))
    return await append_step(conn, keyring, event_id, step, actor, now)


async def sign_off(
    conn: AsyncConnection,
    keyring: Keyring,
    event_id: str,
    actor: audit.Actor,
    now: dt.datetime,
    note: str = "",
) -> Event:
    """A supervisor closes a handled event (acknowledged, with a disposition)."""
    event = await get_event(conn, event_id, lock=True)
    kinds = [
        row.kind
        for row in await conn.execute(
            sa.select(crisis_steps.c.kind).where(crisis_steps.c.event_id == event_id)
        )
    ]
    ledger.check_can_sign_off(event.state, kinds)
    step = ledger.SignedOff.parse({"note": note} if note else {}, now)
    await conn.execute(
        crisis_events.update()
        .where(crisis_events.c.id == event_id)
        .values(state="closed", signed_off_at=now, signed_off_by=actor.id)
    )
    await append_step(conn, keyring, event_id, step, actor, now)
    closed = replace(event, state="closed", signed_off_at=now, signed_off_by=actor.id)
    await enqueue(conn, closed, "signed_off", (), now)
    return closed


# Deadlines ---------------------------------------------------------------------------------


async def fire_timer(
    conn: AsyncConnection, keyring: Keyring, timer: Any, now: dt.datetime, worker: str
) -> bool:
    """Fire one claimed timer exactly once: log the miss and page the next rung."""
    if not await deadlines.claim(conn, timer, now, worker):
        return False
    event = await get_event(conn, timer.event_id, lock=True)
    if event.state != "open":
        # Acknowledged while this timer was being claimed: the ack wins.
        await deadlines.stand_down(conn, timer.id, now)
        return False
    waiting_on = tuple(role for role in timer.waiting_on.split(",") if role)
    page = tuple(role for role in timer.page.split(",") if role)
    holders = await holders_of(conn, event, timer.due_at)
    missed = ledger.DeadlineMissed(
        timer.purpose,
        timer.due_at,
        list(waiting_on),
        sorted({holder for role in waiting_on if (holder := holders.get(role)) is not None}),
    )
    await append_step(conn, keyring, event.id, missed, audit.SYSTEM, now)
    if page:
        current = await holders_of(conn, event, now)
        await _page(
            conn,
            keyring,
            event,
            page,
            "repage" if set(page) <= set(waiting_on) else "escalation",
            now,
            "escalation",
            current,
        )
    return True


# Reading -----------------------------------------------------------------------------------


async def open_events_for_programs(
    conn: AsyncConnection, program_ids: list[str] | None
) -> list[Event]:
    """Events not yet signed off, newest first, for these programs (None: every program)."""
    query = sa.select(crisis_events).where(crisis_events.c.state != "closed")
    if program_ids is not None:
        query = query.where(crisis_events.c.program_id.in_(program_ids))
    found = await conn.execute(query.order_by(crisis_events.c.raised_at.desc()))
    return [_event(row) for row in found]


async def open_event_for(conn: AsyncConnection, patient_id: str, session_id: str) -> Event | None:
    """The patient's unclosed event in this session, or None."""
    row = (
        await conn.execute(
            sa.select(crisis_events).where(
                crisis_events.c.patient_id == patient_id,
                crisis_events.c.session_id == session_id,
                crisis_events.c.state != "closed",
            )
        )
    ).first()
    return None if row is None else _event(row)
