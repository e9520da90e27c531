"""The daily reminder: once per patient per day, a PHI-free notice through the notifier.

Each pass looks at every program whose reminder is on and whose local reminder time has
come, and queues one notice in the crisis path's outbox (whose worker delivers it to the
program's webhook, retrying like any notification) for each patient with an active link who
has not checked in today. The once-a-day marker is a row in `mood_reminders`, written in the
same transaction as the outbox row: a restart, or a second process, never sends a second
reminder for the same day, and a crash between the two loses neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from care.mood import REMINDER_KIND, local_day, reminder_body, reminder_due
from rooms.schedule import zone
from server.appkeys import BACKGROUND, CLOCK, ENGINE, SETTINGS
from server.catalog.store import new_id
from server.clock import Clock
from server.logs import get_logger
from server.storage.tables import (
    join_links,
    mood_entries,
    mood_reminders,
    mood_settings,
    notification_outbox,
    patients,
    programs,
)

log = get_logger(__name__)


async def _due_programs(engine: AsyncEngine, now: dt.datetime) -> list[tuple[str, dt.date]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(programs.c.id, programs.c.time_zone, mood_settings.c.reminder_time)
            .join(mood_settings, mood_settings.c.program_id == programs.c.id)
            .where(mood_settings.c.reminder_enabled.is_(True))
        )
        due = []
        for row in rows:
            local = now.astimezone(zone(row.time_zone))
            if reminder_due(local, dt.time.fromisoformat(row.reminder_time)):
                due.append((row.id, local_day(now, zone(row.time_zone))))
    return due


async def _waiting(
    engine: AsyncEngine, program_id: str, day: dt.date, now: dt.datetime
) -> list[str]:
    """Patients with an active link, not checked in today and not yet reminded today."""
    active = sa.select(join_links.c.patient_id).where(
        join_links.c.revoked_at.is_(None), join_links.c.expires_at > now
    )
    checked = sa.select(mood_entries.c.patient_id).where(mood_entries.c.day == day)
    reminded = sa.select(mood_reminders.c.patient_id).where(mood_reminders.c.day == day)
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(patients.c.id)
            .where(
                patients.c.program_id == program_id,
                patients.c.id.in_(active),
                patients.c.id.not_in(checked),
                patients.c.id.not_in(reminded),
            )
            .order_by(patients.c.id)
        )
        return [row.id for row in rows]


async def queue_due_reminders(engine: AsyncEngine, clock: Clock, public_url: str) -> int:
    """Queue today's reminder for every patient who is due one; return how many."""
    now = clock.now()
    queued = 0
    for program_id, day in await _due_programs(engine, now):
        for patient_id in await _waiting(engine, program_id, day, now):
            notification_id = new_id()
            body = reminder_body(
                notification_id, program_id, patient_id, day, now, f"{public_url}/mood"
            )
            try:
                async with engine.begin() as conn:
                    await conn.execute(
                        mood_reminders.insert().values(
                            id=new_id(),
                            patient_id=patient_id,
                            day=day,
                            notification_id=notification_id,
                            created_at=now,
                        )
                    )
                    await conn.execute(
                        notification_outbox.insert().values(
                            id=notification_id,
                            event_id=None,
                            program_id=program_id,
                            kind=REMINDER_KIND,
                            body=body,
                            status="pending",
                            created_at=now,
                            next_attempt_at=now,
                            attempts=0,
                        )
                    )
            except IntegrityError:
                continue  # another process queued this patient's reminder for today first
            queued += 1
    if queued:
        log.info("mood.reminders_queued", count=queued)
    return queued


async def reminder_worker(app: web.Application) -> AsyncIterator[None]:
    """A cleanup_ctx: look for due reminders every IOP_MOOD_REMINDER_POLL_SECONDS."""
    settings = app[SETTINGS]

    async def loop() -> None:
        while True:
            try:
                await queue_due_reminders(app[ENGINE], app[CLOCK], settings.public_url)
            except (SQLAlchemyError, OSError) as exc:
                # The next pass retries: the markers say who is still due today.
                log.warning("mood.reminders_failed", error_type=type(exc).__name__)
            await asyncio.sleep(settings.mood_reminder_poll_s)

    task = asyncio.create_task(loop(), name="mood-reminders")
    app[BACKGROUND].add(task)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app[BACKGROUND].discard(task)
