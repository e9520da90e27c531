"""What the supervisor dashboard shows, built from storage and the live rooms in memory.

Ids, levels, states, times, session titles and display names: no safety data. A patient's
name is the group display name every staff screen shows (the room, the event page), opened
from the patient's record named by the event itself, so an event raised before the patient
is in the room (a check-in screen) is named as soon as it appears. Whether the patient is
in the room is read from the live room.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.ledger import Event
from rooms.model import Presence, RoomRole
from rooms.registry import RoomRegistry
from server.catalog import patients as catalog_patients
from server.crisis import deadlines as crisis_deadlines
from server.crisis import store as crisis_store
from server.phi import Keyring
from server.storage.tables import groups, sessions, staff

# A session counts as running from a little before its start (the waiting room opens).
EARLY = dt.timedelta(minutes=30)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


async def session_rows(
    conn: AsyncConnection, now: dt.datetime, live_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Sessions running now (by schedule) or live in a room, every program."""
    running = sa.and_(
        sessions.c.starts_at <= now + EARLY,
        sessions.c.ends_at > now,
        sessions.c.state.not_in(("cancelled", "ended")),
    )
    condition = sa.or_(running, sessions.c.id.in_(live_ids)) if live_ids else running
    found = await conn.execute(
        sa.select(
            sessions.c.id,
            sessions.c.program_id,
            sessions.c.kind,
            sessions.c.starts_at,
            sessions.c.ends_at,
            groups.c.name.label("group_name"),
        )
        .outerjoin(groups, groups.c.id == sessions.c.group_id)
        .where(condition)
    )
    return {
        row.id: {
            "id": row.id,
            "program_id": row.program_id,
            "title": row.group_name or "One-on-one session",
            "kind": row.kind,
            "starts_at": _iso(row.starts_at),
            "ends_at": _iso(row.ends_at),
        }
        for row in found
    }


def live_counts(rooms: RoomRegistry) -> dict[str, dict[str, Any]]:
    """Per live room: its state and how many patients are in it or waiting, and staff."""
    out: dict[str, dict[str, Any]] = {}
    for hub in rooms:
        counts: Counter[str] = Counter()
        for member in hub.room.members.values():
            if member.role is RoomRole.PARTICIPANT:
                if member.in_room:
                    counts["in_room"] += 1
                elif member.presence is Presence.WAITING:
                    counts["waiting"] += 1
            elif member.in_room:
                counts["staff"] += 1
        out[hub.room.id] = {
            "room_state": hub.room.state.value,
            "in_room": counts["in_room"],
            "waiting": counts["waiting"],
            "staff": counts["staff"],
        }
    return out


def sessions_view(
    rows: dict[str, dict[str, Any]], live: dict[str, dict[str, Any]], program_id: str | None
) -> list[dict[str, Any]]:
    """The sessions one viewer sees (None: every program), live ones first."""
    out = []
    for session_id, row in rows.items():
        if program_id is not None and row["program_id"] != program_id:
            continue
        counts = live.get(session_id)
        view = {
            **row,
            "live": counts is not None,
            "room_state": None,
            "in_room": 0,
            "waiting": 0,
            "staff": 0,
        }
        if counts is not None:
            view.update(counts)
        out.append(view)
    out.sort(key=lambda s: (not s["live"], s["starts_at"] or "", s["id"]))
    return out


async def staff_names(conn: AsyncConnection, ids: set[str]) -> dict[str, str]:
    """Staff display names by id."""
    if not ids:
        return {}
    found = await conn.execute(
        sa.select(staff.c.id, staff.c.display_name).where(staff.c.id.in_(sorted(ids)))
    )
    return {row.id: row.display_name for row in found}


async def event_views(
    conn: AsyncConnection,
    keyring: Keyring,
    events: list[Event],
    rooms: RoomRegistry,
    now: dt.datetime,
    holders: dict[str, dict[str, str | None]] | None = None,
) -> list[dict[str, Any]]:
    """The dashboard's view of each event: level, state, times, who has it, what is due.

    `holders` (event id -> role -> staff id) saves looking up again who is on an event.
    """
    holders = holders or {}
    ids = [event.id for event in events]
    assigned = await crisis_store.assignees(conn, keyring, events)
    deadlines = await crisis_deadlines.next_deadlines(conn, ids)
    titles = await conn.execute(
        sa.select(sessions.c.id, groups.c.name)
        .outerjoin(groups, groups.c.id == sessions.c.group_id)
        .where(sessions.c.id.in_({event.session_id for event in events}))
    )
    title_of = {row.id: row.name or "One-on-one session" for row in titles}
    choices = {
        event.id: await crisis_store.assignable(conn, event, now, holders.get(event.id))
        for event in events
    }
    people: set[str] = set(assigned.values())
    for event in events:
        people.update(choices[event.id])
        if event.acknowledged_by:
            people.add(event.acknowledged_by)
        if event.signed_off_by:
            people.add(event.signed_off_by)
    names = await staff_names(conn, people)
    patient_names = await catalog_patients.display_names(
        conn, keyring, {event.patient_id for event in events}
    )

    def person(staff_id: str | None) -> dict[str, str] | None:
        if staff_id is None:
            return None
        return {"id": staff_id, "name": names.get(staff_id, "Staff member")}

    out = []
    for event in events:
        hub = rooms.get(event.session_id)
        member = None if hub is None else hub.room.members.get(f"patient:{event.patient_id}")
        deadline = deadlines.get(event.id)
        out.append(
            {
                "id": event.id,
                "program_id": event.program_id,
                "session_id": event.session_id,
                "session_title": title_of.get(event.session_id, "Session"),
                "patient_name": patient_names.get(event.patient_id),
                "patient_present": None if member is None else member.presence.value,
                "trigger": event.trigger,
                "level": event.level,
                "state": event.state,
                "raised_at": _iso(event.raised_at),
                "acknowledged_at": _iso(event.acknowledged_at),
                "acknowledged_by": person(event.acknowledged_by),
                "assigned_to": person(assigned.get(event.id)),
                "signed_off_at": _iso(event.signed_off_at),
                "signed_off_by": person(event.signed_off_by),
                "next_deadline": None
                if deadline is None or event.state != "open"
                else {"purpose": deadline[0], "due_at": _iso(deadline[1])},
                "assignable": [
                    {"id": staff_id, "name": names.get(staff_id, "Staff member"), "role": role}
                    for staff_id, role in choices[event.id].items()
                ],
            }
        )
    return out
