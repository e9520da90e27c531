"""Attendance pages: one session's figures (attest, CSV) and the weekly roll-up."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms import attendance as rules
from rooms.schedule import zone
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action, Role
from server.accounts.scope import clinician_scope, program_scope
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.family import links as family_links
from server.render import render
from server.roomsocket.access import room_info, staff_role
from server.storage.tables import (
    appointments,
    attendance_attestations,
    attendance_events,
    group_members,
    groups,
    patients,
    programs,
    session_clocks,
    staff,
)

CSV_COLUMNS = (
    "name",
    "role",
    "first_join",
    "last_leave",
    "reconnects",
    "minutes_present_excluding_breaks",
    "break_minutes",
    "minutes_before_start",
)


async def _names(request: web.Request, conn: AsyncConnection, people: set[str]) -> dict[str, str]:
    patient_ids = [p.split(":", 1)[1] for p in people if p.startswith("patient:")]
    staff_ids = [p.split(":", 1)[1] for p in people if p.startswith("staff:")]
    names = {
        f"patient:{pid}": name
        for pid, name in (
            await catalog_patients.display_names(conn, request.app[KEYRING], patient_ids)
        ).items()
    }
    rows = await conn.execute(
        sa.select(staff.c.id, staff.c.display_name).where(staff.c.id.in_(staff_ids))
    )
    names |= {f"staff:{row.id}": row.display_name for row in rows}
    # A family session's support person: "Support person (relationship)", never a name.
    support_ids = [p.split(":", 1)[1] for p in people if p.startswith("support:")]
    labels = await family_links.labels(conn, request.app[KEYRING], support_ids)
    names |= {f"support:{link_id}": label for link_id, label in labels.items()}
    return names


async def session_figures(
    request: web.Request, conn: AsyncConnection, session_id: str, now: dt.datetime
) -> tuple[list[rules.PhaseSpan], list[dict[str, Any]]]:
    """The phases as run and everyone's row, computed from recorded events only."""
    rows = await conn.execute(
        sa.select(attendance_events).where(attendance_events.c.session_id == session_id)
    )
    events, roles = [], {}
    for row in rows:
        person = f"{row.person_type}:{row.person_id}"
        roles[person] = row.role
        events.append(rules.Event(person, row.event, row.at))
    state = await conn.scalar(
        sa.select(session_clocks.c.state).where(session_clocks.c.session_id == session_id)
    )
    spans = rules.phase_spans(state, now)
    presences = rules.session_attendance(events, spans, now)
    names = await _names(request, conn, set(presences))
    table = [
        {
            "person": person,
            "name": names.get(person, "unknown"),
            "role": roles[person],
            "first_join": presence.first_join,
            "last_leave": presence.last_leave,
            "reconnects": presence.reconnects,
            "minutes": presence.minutes,
            "break_minutes": round(presence.excluded_break_s / 60, 1),
            "before_start_minutes": round(presence.before_start_s / 60, 1),
            "per_phase": {i: round(s / 60, 1) for i, s in presence.per_phase_s.items()},
        }
        for person, presence in presences.items()
    ]
    table.sort(key=lambda r: (r["role"] == "participant", r["name"].lower()))
    return spans, table


def _fingerprint(table: list[dict[str, Any]]) -> str:
    figures = [(r["person"], r["minutes"], r["break_minutes"], r["reconnects"]) for r in table]
    return hashlib.sha256(json.dumps(figures).encode()).hexdigest()


async def _session_access(request: web.Request, conn: AsyncConnection) -> tuple[Any, Any]:
    """The session, for its host, co-host, a supervisor of its program, or an admin."""
    who = identity(request)
    found = await room_info(conn, request.match_info["session_id"])
    if found is None:
        raise web.HTTPNotFound(reason="There is no such session.")
    info, row = found
    role = staff_role(row, who.program_id, who.id, who.role)
    if role is None and who.role is not Role.ADMIN:
        raise web.HTTPNotFound(reason="There is no such session among yours.")
    return info, row


def _local(value: dt.datetime | None, time_zone: str) -> str:
    return "" if value is None else value.astimezone(zone(time_zone)).strftime("%H:%M:%S")


@requires(Action.ATTENDANCE_READ, phi=True)
async def session_attendance_page(request: web.Request) -> web.Response:
    """A session's attendance, from recorded events, with the attestation."""
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        info, row = await _session_access(request, conn)
        spans, table = await session_figures(request, conn, info.id, now)
        attested = (
            await conn.execute(
                sa.select(attendance_attestations, staff.c.display_name)
                .join(staff, staff.c.id == attendance_attestations.c.staff_id)
                .where(attendance_attestations.c.session_id == info.id)
                .order_by(attendance_attestations.c.at.desc())
                .limit(1)
            )
        ).first()
        lead = await conn.scalar(
            sa.select(staff.c.display_name).where(
                staff.c.id == (row.lead_clinician_id or row.clinician_id)
            )
        )
        await audit_event(
            request, conn, "attendance.viewed", target_type="session", target_id=info.id
        )
    who = identity(request)
    context = {
        "info": info,
        "spans": spans,
        "rows": table,
        "tz": info.time_zone,
        "local": _local,
        "facilitator": lead,
        "attested": attested,
        "changed": attested is not None and attested.figures_sha256 != _fingerprint(table),
        "can_attest": who.id in (row.lead_clinician_id, row.cofacilitator_id, row.clinician_id),
        "csrf": await csrf_token(request),
    }
    return await render(request, "attendance.html", context)


@requires(Action.ATTENDANCE_READ, phi=True)
async def session_attendance_csv(request: web.Request) -> web.Response:
    """The same figures as CSV."""
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        info, _ = await _session_access(request, conn)
        _, table = await session_figures(request, conn, info.id, now)
        await audit_event(
            request, conn, "attendance.exported", target_type="session", target_id=info.id
        )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in table:
        writer.writerow(
            [
                r["name"],
                r["role"],
                _local(r["first_join"], info.time_zone),
                _local(r["last_leave"], info.time_zone),
                r["reconnects"],
                r["minutes"],
                r["break_minutes"],
                r["before_start_minutes"],
            ]
        )
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="attendance-{info.id}.csv"'},
    )


@requires(Action.ATTENDANCE_READ, phi=True)
async def attest(request: web.Request) -> web.StreamResponse:
    """The session's clinician attests the figures as shown."""
    await read_form(request)
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        info, row = await _session_access(request, conn)
        if who.id not in (row.lead_clinician_id, row.cofacilitator_id, row.clinician_id):
            raise web.HTTPForbidden(reason="Only the session's clinicians attest its attendance.")
        _, table = await session_figures(request, conn, info.id, now)
        await conn.execute(
            attendance_attestations.insert().values(
                id=catalog.new_id(),
                session_id=info.id,
                staff_id=who.id,
                figures_sha256=_fingerprint(table),
                at=now,
            )
        )
        await audit_event(
            request, conn, "attendance.attested", target_type="session", target_id=info.id
        )
    raise web.HTTPSeeOther(f"/sessions/{info.id}/attendance")


@requires(Action.ATTENDANCE_READ, phi=True)
async def weekly_page(request: web.Request) -> web.Response:
    """Each patient's week against the program's IOP threshold, those below it first."""
    who = identity(request)
    now = request.app[CLOCK].now()
    try:
        week = request.query.get("week")
        if week is None:
            async with request.app[ENGINE].connect() as conn:
                anchor = await catalog.program_today(conn, who.program_id, now)
        else:
            anchor = dt.date.fromisoformat(week)
    except ValueError:
        raise web.HTTPBadRequest(reason="week must be a date like 2026-11-23") from None
    monday = anchor - dt.timedelta(days=anchor.weekday())
    async with request.app[ENGINE].begin() as conn:
        results, names = await week_totals(request, conn, who, monday, now)
        await audit_event(
            request, conn, "attendance.weekly_viewed", detail={"week": monday.isoformat()}
        )
    context = {
        "monday": monday,
        "previous": (monday - dt.timedelta(days=7)).isoformat(),
        "next": (monday + dt.timedelta(days=7)).isoformat(),
        "rows": [{"total": t, "name": names.get(t.patient_id, "unknown")} for t in results],
    }
    return await render(request, "attendance_weekly.html", context)


async def week_totals(
    request: web.Request, conn: AsyncConnection, who: Any, monday: dt.date, now: dt.datetime
) -> tuple[list[rules.WeeklyTotal], dict[str, str]]:
    """The weekly roll-up of the week starting `monday` in the caller's scope: everyone
    enrolled (those below the threshold first, fewest hours first) and their display names
    by person key. The caller audits the read."""
    # Sessions are listed by UTC start; widen by a day each side, then keep those whose
    # local date (in their program's zone) falls in the week.
    start = dt.datetime.combine(monday, dt.time(), tzinfo=dt.UTC) - dt.timedelta(days=1)
    end = start + dt.timedelta(days=9)
    listed = await catalog_schedule.list_sessions(
        conn, program_scope(who), start, end, clinician_scope(who)
    )
    programs_rows = {
        r.id: r
        for r in await conn.execute(sa.select(programs.c.id, programs.c.kind, programs.c.time_zone))
    }
    per_program: dict[str, list[tuple[dt.date, dict[str, rules.Presence]]]] = {}
    for s in listed:
        program = programs_rows[s["program_id"]]
        day = dt.datetime.fromisoformat(s["starts_at"]).astimezone(zone(program.time_zone)).date()
        if not monday <= day < monday + dt.timedelta(days=7):
            continue
        _, table = await session_figures(request, conn, s["id"], now)
        presences = {
            r["person"]: rules.Presence(r["person"], total_s=r["minutes"] * 60)
            for r in table
            if r["role"] == "participant"
        }
        per_program.setdefault(s["program_id"], []).append((day, presences))
    adolescent = {
        f"patient:{r.id}": bool(r.adolescent)
        for r in await conn.execute(sa.select(patients.c.id, patients.c.adolescent))
    }
    enrolled = await _enrolled(conn, who, monday, listed)
    results = []
    for program_id in sorted(set(per_program) | set(enrolled.values())):
        minutes = rules.by_day(per_program.get(program_id, []))
        # A patient enrolled this week with no minutes at all is the one most below the
        # threshold: listed (first) with 0 hours, never left out.
        for person, home in enrolled.items():
            if home == program_id:
                minutes.setdefault(person, {})
        totals = rules.weekly(
            minutes,
            adolescent=adolescent,
            substance_use=programs_rows[program_id].kind == "substance_use",
        )
        results.extend(totals)
    names = await _names(request, conn, {t.patient_id for t in results})
    results.sort(key=lambda t: (not t.below, t.hours, names.get(t.patient_id, "")))
    return results, names


async def _enrolled(
    conn: AsyncConnection, who: Any, monday: dt.date, listed: list[dict[str, Any]]
) -> dict[str, str]:
    """Patients the week's roll-up owes a row (person key -> program id), in the caller's
    scope: members of the groups they may see during that week, and the patients of that
    week's one-on-one sessions."""
    sunday = monday + dt.timedelta(days=6)
    query = (
        sa.select(group_members.c.patient_id, groups.c.program_id)
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(
            group_members.c.joined_on <= sunday,
            sa.or_(group_members.c.left_on.is_(None), group_members.c.left_on >= monday),
            groups.c.starts_on <= sunday,
            sa.or_(groups.c.ends_on.is_(None), groups.c.ends_on >= monday),
        )
    )
    program_id = program_scope(who)
    if program_id is not None:
        query = query.where(groups.c.program_id == program_id)
    clinician_id = clinician_scope(who)
    if clinician_id is not None:
        query = query.where(
            sa.or_(
                groups.c.lead_clinician_id == clinician_id,
                groups.c.cofacilitator_id == clinician_id,
            )
        )
    found = {f"patient:{row.patient_id}": row.program_id for row in await conn.execute(query)}
    appointment_ids = [s["appointment_id"] for s in listed if s.get("appointment_id")]
    if appointment_ids:
        rows = await conn.execute(
            sa.select(appointments.c.patient_id, appointments.c.program_id).where(
                appointments.c.id.in_(appointment_ids)
            )
        )
        found |= {f"patient:{row.patient_id}": row.program_id for row in rows}
    return found


def add_routes(app: web.Application) -> None:
    """Register the attendance pages."""
    app.router.add_get("/sessions/{session_id}/attendance", session_attendance_page)
    app.router.add_get("/sessions/{session_id}/attendance.csv", session_attendance_csv)
    app.router.add_post("/sessions/{session_id}/attendance/attest", attest)
    app.router.add_get("/attendance/weekly", weekly_page)
