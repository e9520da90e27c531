"""The program's measurement-based-care view: per patient, first and latest PHQ-9 and GAD-7,
the change and its reliable-change marker, weeks in the program, and last full week's
attendance against the program's threshold (the weekly roll-up, computed once, in
server/attendance/pages.py).

Clinicians see the patients of their own groups and one-on-ones, admins everyone.
Supervisors are refused by the role check: they hold no patient records, the decision the
attendance pages made for per-patient attendance (server/accounts/permissions.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from care import outcomes
from rooms.schedule import zone
from server.accounts.auth import StaffIdentity, audit_event, identity, requires
from server.accounts.permissions import Action, Role
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.attendance.pages import week_totals
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.checkin.store import open_screening
from server.render import render
from server.storage.tables import group_members, patients, programs, screenings


async def _patients_in_scope(conn: AsyncConnection, who: StaffIdentity) -> list[Any]:
    """(id, program_id, created_at) of the patients whose records `who` may open."""
    query = sa.select(patients.c.id, patients.c.program_id, patients.c.created_at)
    if who.role is not Role.ADMIN:
        mine = await catalog_patients.patients_of_clinician(conn, who.id)
        query = query.where(patients.c.program_id == who.program_id, patients.c.id.in_(mine))
    return list(await conn.execute(query))


async def _scores(
    conn: AsyncConnection, request: web.Request, ids: list[str]
) -> dict[str, dict[str, list[outcomes.Score]]]:
    """Each patient's complete PHQ-9 and GAD-7 totals (incomplete screens are left out)."""
    found: dict[str, dict[str, list[outcomes.Score]]] = {
        pid: {m: [] for m in outcomes.MEASURES} for pid in ids
    }
    if not ids:
        return found
    rows = await conn.execute(sa.select(screenings).where(screenings.c.patient_id.in_(ids)))
    for row in rows:
        if not any(m in row.instruments.split(",") for m in outcomes.MEASURES):
            continue
        result = open_screening(request.app[KEYRING], row)
        for measure in outcomes.MEASURES:
            total = (result.get(measure) or {}).get("total")
            if isinstance(total, int):
                found[row.patient_id][measure].append(outcomes.Score(row.at, total))
    return found


async def _started(conn: AsyncConnection, rows: list[Any]) -> dict[str, dt.date]:
    """When each patient started: the first day in a group, else the day they were added."""
    ids = [r.id for r in rows]
    first = {
        r.patient_id: r.first
        for r in await conn.execute(
            sa.select(
                group_members.c.patient_id, sa.func.min(group_members.c.joined_on).label("first")
            )
            .where(group_members.c.patient_id.in_(ids))
            .group_by(group_members.c.patient_id)
        )
    }
    zones = {
        r.id: r.time_zone
        for r in await conn.execute(sa.select(programs.c.id, programs.c.time_zone))
    }
    return {
        r.id: first.get(r.id) or r.created_at.astimezone(zone(zones[r.program_id])).date()
        for r in rows
    }


@requires(Action.PATIENTS_READ, phi=True)
async def outcomes_page(request: web.Request) -> web.Response:
    """The measurement-based-care table, sortable by any column; the read is audited."""
    who = identity(request)
    now = request.app[CLOCK].now()
    sort = request.query.get("sort", "marker")
    direction = request.query.get("dir", "asc")
    if sort not in outcomes.SORTS:
        raise web.HTTPBadRequest(reason=f"sort must be one of: {', '.join(outcomes.SORTS)}")
    if direction not in ("asc", "desc"):
        raise web.HTTPBadRequest(reason="dir must be asc or desc")
    async with request.app[ENGINE].begin() as conn:
        today = await catalog.program_today(conn, who.program_id, now)
        monday = outcomes.last_full_week(today)
        in_scope = await _patients_in_scope(conn, who)
        ids = [r.id for r in in_scope]
        names = await catalog_patients.display_names(conn, request.app[KEYRING], ids)
        scores = await _scores(conn, request, ids)
        started = await _started(conn, in_scope)
        totals, _ = await week_totals(request, conn, who, monday, now)
        await audit_event(
            request,
            conn,
            "outcomes.viewed",
            detail={"patients": len(ids), "week": monday.isoformat()},
        )
    week = {t.patient_id: outcomes.WeekAttendance(t.hours, t.threshold, t.below) for t in totals}
    rows = [
        outcomes.PatientOutcome(
            patient_id=pid,
            name=names.get(pid, "unknown"),
            phq9=outcomes.summarize("phq9", scores[pid]["phq9"]),
            gad7=outcomes.summarize("gad7", scores[pid]["gad7"]),
            weeks=outcomes.weeks_in_program(started.get(pid), today),
            attendance=week.get(f"patient:{pid}"),
        )
        for pid in ids
    ]
    context = {
        "rows": outcomes.sort_rows(rows, sort, descending=direction == "desc"),
        "sort": sort,
        "dir": direction,
        "monday": monday,
        "sunday": monday + dt.timedelta(days=6),
        "thresholds": outcomes.RELIABLE_CHANGE_POINTS,
        "remission_below": outcomes.PHQ9_REMISSION_BELOW,
    }
    return await render(request, "outcomes.html", context)


def add_routes(app: web.Application) -> None:
    """Register the outcomes page."""
    app.router.add_get("/outcomes", outcomes_page)
