"""The pre-session check-in in storage: cadence, answers as they are given, screenings,
what staff see of it, and a patient's history. Safety checks are safety_checks.py's."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.escalation import Concern, Outcome, raise_concern
from crisis.questions import Plan, floor, results, severe
from crisis.screening import LEVELS
from server.catalog.store import new_id
from server.checkin.safety_checks import location_opens_at, open_answers, safety_check_for
from server.crisis import store as crisis_store
from server.crisis.concerns import SqlConcerns
from server.phi import Keyring
from server.storage.tables import (
    checkin_progress,
    crisis_requests,
    patients,
    programs,
    safety_checks,
    screenings,
    sessions,
)

DEFAULT_CADENCE = {"cssrs": 0, "phq9": 7, "gad7": 7}  # days between; 0 = every session


def _context(table: str, row_id: str) -> str:
    return f"{table}/{row_id}"


async def _session_row(conn: AsyncConnection, session_id: str) -> Any:
    return (
        await conn.execute(
            sa.select(
                sessions.c.starts_at,
                sessions.c.ends_at,
                programs.c.kind,
                programs.c.screening_cadence,
                programs.c.severe_scores,
            )
            .join(programs, programs.c.id == sessions.c.program_id)
            .where(sessions.c.id == session_id)
        )
    ).one()


async def plan_for(
    conn: AsyncConnection, session_id: str, patient_id: str, now: dt.datetime
) -> Plan:
    """Which instruments are due: the program's cadence, or the patient's override."""
    session = await _session_row(conn, session_id)
    override = await conn.scalar(
        sa.select(patients.c.screening_cadence).where(patients.c.id == patient_id)
    )
    cadence = {**DEFAULT_CADENCE, **(session.screening_cadence or {}), **(override or {})}
    rows = (
        await conn.execute(
            sa.select(screenings.c.instruments, screenings.c.at, screenings.c.session_id).where(
                screenings.c.patient_id == patient_id
            )
        )
    ).all()

    def due(name: str) -> bool:
        days = cadence.get(name)
        if days is None or days < 0:
            return False
        for row in rows:
            if name not in row.instruments.split(","):
                continue
            if days == 0 and row.session_id == session_id:
                return False
            if days > 0 and now - row.at < dt.timedelta(days=days):
                return False
        return True

    return Plan(due("phq9"), due("gad7"), due("cssrs"), session.kind == "substance_use")


async def current_safety_check(
    conn: AsyncConnection, session_id: str, patient_id: str, window: dt.timedelta
) -> Any:
    """This session's safety check if it was taken within `window` before the session
    starts (or since); one taken earlier says where the patient was, not where they are."""
    session = await _session_row(conn, session_id)
    return await safety_check_for(
        conn, session_id, patient_id, location_opens_at(session.starts_at, window)
    )


async def screening_for(conn: AsyncConnection, session_id: str, patient_id: str) -> Any:
    """This session's screening, or None."""
    return (
        await conn.execute(
            sa.select(screenings)
            .where(screenings.c.session_id == session_id, screenings.c.patient_id == patient_id)
            .order_by(screenings.c.at.desc())
            .limit(1)
        )
    ).first()


def open_screening(keyring: Keyring, row: Any) -> dict[str, Any]:
    """A screening's answers, scores and level."""
    return dict(json.loads(keyring.open(row.result_enc, context=_context("screenings", row.id))))


def _more_serious(level: str, than: str) -> bool:
    return LEVELS.index(level) > LEVELS.index(than)


@dataclass(slots=True)
class Progress:
    """A check-in under way: its plan, the answers so far, and the level already raised."""

    plan: Plan
    answers: dict[str, str]
    raised_level: str


async def progress_for(
    conn: AsyncConnection,
    keyring: Keyring,
    session_id: str,
    patient_id: str,
    now: dt.datetime,
    *,
    lock: bool = False,
) -> Progress:
    """The stored check-in in progress for this session, started (and planned) if none."""
    query = sa.select(checkin_progress).where(
        checkin_progress.c.session_id == session_id, checkin_progress.c.patient_id == patient_id
    )
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    if row is not None:
        answers = json.loads(
            keyring.open(row.answers_enc, context=_context("checkin_progress", row.id))
        )
        return Progress(Plan(**row.plan), answers, row.raised_level)
    plan = await plan_for(conn, session_id, patient_id, now)
    progress_id = new_id()
    await conn.execute(
        checkin_progress.insert().values(
            id=progress_id,
            session_id=session_id,
            patient_id=patient_id,
            plan=plan.to_json(),
            answers_enc=keyring.seal("{}", context=_context("checkin_progress", progress_id)),
            raised_level="none",
            started_at=now,
            updated_at=now,
        )
    )
    return Progress(plan, {}, "none")


async def record_answer(
    conn: AsyncConnection,
    keyring: Keyring,
    *,
    session_id: str,
    patient_id: str,
    progress: Progress,
    qid: str,
    value: str,
    now: dt.datetime,
) -> Outcome:
    """Store one answer, sealed, and act at once on the level the answers now commit to.

    A patient who says yes to intent (C-SSRS Q4) and closes the tab has still said it:
    the concern is raised as the answer lands, not when the last question is answered.
    """
    answers = {**progress.answers, qid: value}
    row_id = await conn.scalar(
        sa.select(checkin_progress.c.id).where(
            checkin_progress.c.session_id == session_id,
            checkin_progress.c.patient_id == patient_id,
        )
    )
    level, rule = floor(answers)
    outcome = Outcome("none")
    raised = progress.raised_level
    if _more_serious(level, raised):
        session = await _session_row(conn, session_id)
        concern = Concern(
            patient_id=patient_id,
            session_id=session_id,
            trigger="screening",
            level=level,
            rule=rule,
            at=now,
            detail={"check_in": "in progress"},
        )
        outcome = await raise_concern(SqlConcerns(conn, keyring, session.ends_at), concern)
        if outcome.kind == "event":
            await _close_superseded_reviews(conn, session_id, patient_id, now)
        raised = level
    await conn.execute(
        checkin_progress.update()
        .where(checkin_progress.c.id == row_id)
        .values(
            answers_enc=keyring.seal(
                json.dumps(answers, sort_keys=True), context=_context("checkin_progress", row_id)
            ),
            raised_level=raised,
            updated_at=now,
        )
    )
    progress.answers, progress.raised_level = answers, raised
    return outcome


async def _close_superseded_reviews(
    conn: AsyncConnection, session_id: str, patient_id: str, now: dt.datetime
) -> None:
    # The event now carries this check-in's concern: one incident, not an event plus a
    # low review task for an earlier answer of the same screen.
    await conn.execute(
        crisis_requests.update()
        .where(
            crisis_requests.c.session_id == session_id,
            crisis_requests.c.patient_id == patient_id,
            crisis_requests.c.trigger == "screening",
            crisis_requests.c.kind == "review_task",
            crisis_requests.c.level == "low",
            crisis_requests.c.closed_at.is_(None),
        )
        .values(closed_at=now, closed_by="system")
    )


async def save_screening(
    conn: AsyncConnection,
    keyring: Keyring,
    *,
    session_id: str,
    patient_id: str,
    plan: Plan,
    answers: dict[str, str],
    now: dt.datetime,
    raised_level: str = "none",
) -> tuple[dict[str, Any], Outcome]:
    """Score, store sealed, and hand the level to the crisis entry point.

    `raised_level` is what the answers already raised while they were given: the level is
    raised again only if the finished screen is more serious, so finishing never opens a
    second event (or a second review task) for the same answers. Severe totals and
    substance use right now become one review task of their own.
    """
    session = await _session_row(conn, session_id)
    scored = results(plan, answers)
    scored["flags"] = severe(scored, session.severe_scores or {})
    instruments = [name for name in ("phq9", "gad7", "cssrs", "sud") if name in scored]
    screening_id = new_id()
    await conn.execute(
        screenings.insert().values(
            id=screening_id,
            session_id=session_id,
            patient_id=patient_id,
            result_enc=keyring.seal(
                json.dumps(scored, sort_keys=True), context=_context("screenings", screening_id)
            ),
            instruments=",".join(instruments) or "none",
            at=now,
        )
    )
    await conn.execute(
        checkin_progress.delete().where(
            checkin_progress.c.session_id == session_id,
            checkin_progress.c.patient_id == patient_id,
        )
    )
    store = SqlConcerns(conn, keyring, session.ends_at)
    detail = {key: scored[key] for key in ("phq9", "gad7", "cssrs") if key in scored}
    outcome = Outcome("none")
    if _more_serious(scored["level"], raised_level):
        concern = Concern(
            patient_id=patient_id,
            session_id=session_id,
            trigger="screening",
            level=scored["level"],
            rule=scored["rule"],
            at=now,
            detail=detail,
        )
        outcome = await raise_concern(store, concern)
        if outcome.kind == "event":
            await _close_superseded_reviews(conn, session_id, patient_id, now)
    if scored["flags"]:
        review = Concern(
            patient_id=patient_id,
            session_id=session_id,
            trigger="screening",
            level="low",
            rule="; ".join(flag["rule"] for flag in scored["flags"]),
            at=now,
            detail=detail,
        )
        await raise_concern(store, review)
    return scored, outcome


async def staff_status(
    conn: AsyncConnection, keyring: Keyring, session_id: str, patient_id: str
) -> dict[str, Any]:
    """What staff see beside a patient's name: check-in done, level, private space."""
    check = await safety_check_for(conn, session_id, patient_id)
    screening = await screening_for(conn, session_id, patient_id)
    open_requests = (
        await conn.execute(
            sa.select(crisis_requests.c.kind, crisis_requests.c.level).where(
                crisis_requests.c.session_id == session_id,
                crisis_requests.c.patient_id == patient_id,
                crisis_requests.c.closed_at.is_(None),
            )
        )
    ).all()
    result = open_screening(keyring, screening) if screening else {}
    event = await crisis_store.open_event_for(conn, patient_id, session_id)
    escalations = [{"kind": r.kind, "level": r.level} for r in open_requests]
    if event is not None:
        escalations.insert(0, {"kind": "event", "level": event.level, "id": event.id})
    return {
        "done": check is not None,
        "private_space": None if check is None else bool(check.private_space),
        "level": result.get("level"),
        "flags": _badges(result),
        "escalations": escalations,
    }


BADGES = {
    "phq9_severe": "severe PHQ-9",
    "gad7_severe": "severe GAD-7",
    "using_now": "using right now",
}


def _badges(result: dict[str, Any]) -> list[str]:
    # Short labels for staff; the totals stay on the audited history page.
    found = [BADGES[flag["code"]] for flag in result.get("flags", []) if flag["code"] in BADGES]
    if result.get("declined"):
        found.insert(0, "declined the suicide screen")
    return found


async def checkin_complete(
    conn: AsyncConnection,
    session_id: str,
    patient_id: str,
    now: dt.datetime,
    window: dt.timedelta,
) -> bool:
    """A current safety check (see `current_safety_check`) and no screening due."""
    if await current_safety_check(conn, session_id, patient_id, window) is None:
        return False
    plan = await plan_for(conn, session_id, patient_id, now)
    if plan.phq9 or plan.gad7 or plan.cssrs or plan.sud:
        return await screening_for(conn, session_id, patient_id) is not None
    return True


async def history(conn: AsyncConnection, keyring: Keyring, patient_id: str) -> dict[str, Any]:
    """A patient's screenings and safety checks, oldest first, opened."""
    found = await conn.execute(
        sa.select(screenings).where(screenings.c.patient_id == patient_id).order_by(screenings.c.at)
    )
    checks = await conn.execute(
        sa.select(safety_checks)
        .where(safety_checks.c.patient_id == patient_id)
        .order_by(safety_checks.c.at)
    )
    return {
        "screenings": [
            {"at": row.at, "session_id": row.session_id, "result": open_screening(keyring, row)}
            for row in found
        ],
        "checks": [
            {
                "at": row.at,
                "session_id": row.session_id,
                "by_phone": row.recorded_by is not None,
                "answers": open_answers(keyring, row),
            }
            for row in checks
        ],
    }
