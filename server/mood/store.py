"""Daily mood checks in storage: sealed entries, the review task, what staff see of them,
and each program's reminder setting."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from care.mood import (
    DEFAULT_REMINDER_TIME,
    FIRST_SESSION_LOOK_BACK,
    MoodEntry,
    Summary,
    local_day,
    review_reasons,
    summarize,
)
from crisis.escalation import Concern, raise_concern
from rooms.schedule import zone
from server.accounts import joinlinks
from server.catalog.store import new_id
from server.crisis.concerns import SqlConcerns
from server.mood import charts
from server.phi import Keyring
from server.storage.tables import (
    appointments,
    crisis_requests,
    group_members,
    mood_entries,
    mood_settings,
    patients,
    programs,
    sessions,
)

TRIGGER = "mood_check"


def entry_context(row_id: str) -> str:
    """The sealing context of one entry's values."""
    return f"mood_entries/{row_id}"


@dataclass(frozen=True, slots=True)
class PatientProgram:
    """What the check needs of the patient's program: its kind and calendar."""

    program_id: str
    substance_use: bool
    time_zone: str

    def today(self, now: dt.datetime) -> dt.date:
        """The program's calendar day at `now`."""
        return local_day(now, zone(self.time_zone))


async def patient_program(conn: AsyncConnection, patient_id: str) -> PatientProgram:
    """The patient's program (its kind decides whether urges are asked)."""
    row = (
        await conn.execute(
            sa.select(programs.c.id, programs.c.kind, programs.c.time_zone)
            .join(patients, patients.c.program_id == programs.c.id)
            .where(patients.c.id == patient_id)
        )
    ).one()
    return PatientProgram(row.id, row.kind == "substance_use", row.time_zone)


@dataclass(frozen=True, slots=True)
class Stored:
    """An entry as stored, with when it was first given and last changed."""

    entry: MoodEntry
    recorded_at: dt.datetime
    updated_at: dt.datetime


def _open(keyring: Keyring, row: Any) -> Stored:
    data = json.loads(keyring.open(row.entry_enc, context=entry_context(row.id)))
    return Stored(MoodEntry.from_json(row.day, data), row.recorded_at, row.updated_at)


async def entry_on(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, day: dt.date
) -> Stored | None:
    """The patient's check for `day`, or None."""
    row = (
        await conn.execute(
            sa.select(mood_entries).where(
                mood_entries.c.patient_id == patient_id, mood_entries.c.day == day
            )
        )
    ).first()
    return None if row is None else _open(keyring, row)


async def save_entry(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, entry: MoodEntry, now: dt.datetime
) -> bool:
    """Store the day's check, sealed; a second check the same day replaces the first.
    True when it replaced one."""
    row_id = await conn.scalar(
        sa.select(mood_entries.c.id)
        .where(mood_entries.c.patient_id == patient_id, mood_entries.c.day == entry.day)
        .with_for_update()
    )
    if row_id is not None:
        sealed = keyring.seal(
            json.dumps(entry.to_json(), sort_keys=True), context=entry_context(row_id)
        )
        await conn.execute(
            mood_entries.update()
            .where(mood_entries.c.id == row_id)
            .values(entry_enc=sealed, updated_at=now)
        )
        return True
    row_id = new_id()
    await conn.execute(
        mood_entries.insert().values(
            id=row_id,
            patient_id=patient_id,
            day=entry.day,
            entry_enc=keyring.seal(
                json.dumps(entry.to_json(), sort_keys=True), context=entry_context(row_id)
            ),
            recorded_at=now,
            updated_at=now,
        )
    )
    return False


async def entries(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, since: dt.date | None = None
) -> list[MoodEntry]:
    """The patient's checks, oldest first (on days after `since` when given)."""
    query = sa.select(mood_entries).where(mood_entries.c.patient_id == patient_id)
    if since is not None:
        query = query.where(mood_entries.c.day > since)
    rows = await conn.execute(query.order_by(mood_entries.c.day))
    return [_open(keyring, row).entry for row in rows]


# The review task ---------------------------------------------------------------------------


def _patient_sessions(patient_id: str) -> sa.Select[Any]:
    in_groups = sa.select(group_members.c.group_id).where(group_members.c.patient_id == patient_id)
    booked = sa.select(appointments.c.id).where(appointments.c.patient_id == patient_id)
    return sa.select(sessions.c.id, sessions.c.starts_at, sessions.c.ends_at).where(
        sessions.c.state != "cancelled",
        sa.or_(sessions.c.group_id.in_(in_groups), sessions.c.appointment_id.in_(booked)),
    )


async def review_session(
    conn: AsyncConnection, patient_id: str, link_session_id: str | None, now: dt.datetime
) -> Any:
    """The session a review task is owed in: the link's, else the patient's next, else the
    last one they had (a review task belongs to a session, like a severe PHQ-9's)."""
    session_id = link_session_id
    if session_id is None:
        upcoming = await joinlinks.patient_sessions(conn, patient_id, now)
        session_id = upcoming[0].session_id if upcoming else None
    if session_id is not None:
        return (
            await conn.execute(
                sa.select(sessions.c.id, sessions.c.ends_at).where(sessions.c.id == session_id)
            )
        ).first()
    query = _patient_sessions(patient_id)
    last = query.where(sessions.c.starts_at <= now).order_by(sessions.c.starts_at.desc()).limit(1)
    return (await conn.execute(last)).first()


async def raise_review(
    conn: AsyncConnection,
    keyring: Keyring,
    *,
    patient_id: str,
    link_session_id: str | None,
    entry: MoodEntry,
    reasons: tuple[str, ...],
    now: dt.datetime,
) -> str | None:
    """A review task for a very low day, through the crisis path's one entry point; the id,
    or None when one is already open for this session (or there is no session at all)."""
    session = await review_session(conn, patient_id, link_session_id, now)
    if session is None:
        return None
    already = await conn.scalar(
        sa.select(crisis_requests.c.id).where(
            crisis_requests.c.patient_id == patient_id,
            crisis_requests.c.session_id == session.id,
            crisis_requests.c.trigger == TRIGGER,
            crisis_requests.c.closed_at.is_(None),
        )
    )
    if already is not None:
        return None
    concern = Concern(
        patient_id=patient_id,
        session_id=session.id,
        trigger=TRIGGER,
        level="low",
        rule="; ".join(reasons),
        at=now,
        detail={"day": entry.day.isoformat(), "mood": entry.mood, "urges": entry.urges},
    )
    outcome = await raise_concern(SqlConcerns(conn, keyring, session.ends_at), concern)
    return outcome.id


# Since the last session --------------------------------------------------------------------


async def last_session_day(
    conn: AsyncConnection, patient_id: str, session_id: str, time_zone: str
) -> dt.date | None:
    """The program's day of the patient's session before `session_id`, or None."""
    starts = await conn.scalar(sa.select(sessions.c.starts_at).where(sessions.c.id == session_id))
    if starts is None:
        return None
    query = _patient_sessions(patient_id)
    before = (
        query.where(sessions.c.starts_at < starts, sessions.c.id != session_id)
        .order_by(sessions.c.starts_at.desc())
        .limit(1)
    )
    row = (await conn.execute(before)).first()
    return None if row is None else local_day(row.starts_at, zone(time_zone))


async def since_last_session(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, session_id: str, now: dt.datetime
) -> Summary:
    """The daily checks since the patient's previous session, or over the last week before
    their first (staff only)."""
    program = await patient_program(conn, patient_id)
    since = await last_session_day(conn, patient_id, session_id, program.time_zone)
    if since is not None:
        return summarize(await entries(conn, keyring, patient_id, since), since)
    since = program.today(now) - FIRST_SESSION_LOOK_BACK
    found = await entries(conn, keyring, patient_id, since)
    return summarize(found, since, first_session=True)


# The reminder setting ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReminderSetting:
    """Whether a program's patients get a daily reminder, and at what local time."""

    enabled: bool
    at: dt.time


async def reminder_setting(conn: AsyncConnection, program_id: str) -> ReminderSetting:
    """The program's reminder setting (off at 19:00 until an admin sets it)."""
    row = (
        await conn.execute(sa.select(mood_settings).where(mood_settings.c.program_id == program_id))
    ).first()
    if row is None:
        return ReminderSetting(False, DEFAULT_REMINDER_TIME)
    return ReminderSetting(bool(row.reminder_enabled), dt.time.fromisoformat(row.reminder_time))


async def set_reminder(
    conn: AsyncConnection,
    program_id: str,
    setting: ReminderSetting,
    by: str | None,
    now: dt.datetime,
) -> None:
    """Store the program's reminder setting."""
    values = {
        "reminder_enabled": setting.enabled,
        "reminder_time": setting.at.strftime("%H:%M"),
        "updated_at": now,
        "updated_by": by,
    }
    changed = await conn.execute(
        mood_settings.update().where(mood_settings.c.program_id == program_id).values(values)
    )
    if changed.rowcount == 0:
        await conn.execute(mood_settings.insert().values(program_id=program_id, **values))


async def history(conn: AsyncConnection, keyring: Keyring, patient_id: str) -> dict[str, Any]:
    """The patient's daily checks and their trend charts for the history page (the caller
    audits the read)."""
    program = await patient_program(conn, patient_id)
    found = await entries(conn, keyring, patient_id)
    return {
        "mood_entries": found,
        "mood_sud": program.substance_use,
        "mood_chart": charts.scores_svg(found, urges=program.substance_use),
        "sleep_chart": charts.sleep_svg(found),
        "mood_review": review_reasons,
    }
