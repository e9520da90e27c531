"""The crisis path's background work: firing due deadlines and delivering the outbox.

Both loops read their work from storage on every pass, so a restart (or another server
process) simply carries on: deadlines are re-armed and undelivered notifications resent
without any in-memory state to rebuild. Claims are made inside transactions:
`FOR UPDATE SKIP LOCKED` on PostgreSQL lets several processes share the work, each row
fired once; SQLite has no row locks, and its guarded updates make one process safe
(several processes against one database need PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crisis.notify import (
    SIGNATURE_HEADER,
    DeliveryError,
    EventStream,
    Notice,
    Notification,
    retry_delay,
    signature,
)
from server.appkeys import BACKGROUND, CLOCK, CRISIS_STREAM, ENGINE, KEYRING, SETTINGS
from server.clock import Clock
from server.config import Settings
from server.crisis import deadlines, oncall
from server.crisis import publish as crisis_publish
from server.crisis import store as crisis_store
from server.logs import get_logger
from server.phi import Keyring
from server.storage.tables import notification_outbox

log = get_logger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
BATCH = 50
# While one process delivers a notification, others leave it alone this long; a process
# that dies mid-delivery has its notification picked up again afterwards (at least once).
DELIVERY_LEASE = dt.timedelta(minutes=2)


def event_url(settings: Settings, event_id: str) -> str:
    """The deep link a notification carries: signing in is needed to see anything."""
    return f"{settings.public_url}/crisis/events/{event_id}"


class WebhookNotifier:
    """The default notifier: a signed JSON POST to the program's webhook."""

    def __init__(
        self, session: aiohttp.ClientSession, webhook: oncall.Webhook, timeout_s: float
    ) -> None:
        self._session = session
        self._webhook = webhook
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def deliver(self, notification: Notification | Notice) -> None:
        """POST once; any answer but 2xx, or no answer, is a DeliveryError."""
        body = notification.body()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(body, self._webhook.secret),
            "X-IOP-Notification-Id": notification.id,
        }
        try:
            async with self._session.post(
                self._webhook.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryError(f"HTTP {response.status}")
        except TimeoutError:
            raise DeliveryError("timed out") from None
        except aiohttp.ClientError as exc:
            # The exception's text may hold the URL (which can carry a token): type only.
            raise DeliveryError(type(exc).__name__) from None


# Deadlines ---------------------------------------------------------------------------------


async def fire_due_timers(
    engine: AsyncEngine,
    keyring: Keyring,
    clock: Clock,
    worker: str = WORKER_ID,
    stream: EventStream | None = None,
    public_url: str = "",
) -> int:
    """Fire every due deadline (one transaction each); return how many fired here.

    With a `stream`, each escalation reaches this process's dashboards once it commits.
    """
    fired = 0
    for _ in range(BATCH):
        transaction = (
            engine.begin()
            if stream is None
            else crisis_publish.committed(engine, stream, public_url)
        )
        async with transaction as conn:
            now = clock.now()
            timer = await deadlines.due_timer(conn, now)
            if timer is None:
                break
            if await crisis_store.fire_timer(conn, keyring, timer, now, worker):
                fired += 1
                log.warning(
                    "crisis.deadline_missed", event_id=timer.event_id, purpose=timer.purpose
                )
    return fired


# Outbox ------------------------------------------------------------------------------------


async def _claim(conn: AsyncConnection, now: dt.datetime) -> list[Any]:
    rows = (
        await conn.execute(
            sa.select(notification_outbox)
            .where(
                notification_outbox.c.status == "pending",
                notification_outbox.c.next_attempt_at <= now,
            )
            .order_by(notification_outbox.c.next_attempt_at, notification_outbox.c.id)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ).all()
    claimed = []
    for row in rows:
        taken = await conn.execute(
            notification_outbox.update()
            .where(
                notification_outbox.c.id == row.id,
                notification_outbox.c.status == "pending",
                notification_outbox.c.attempts == row.attempts,
            )
            .values(next_attempt_at=now + DELIVERY_LEASE, attempts=row.attempts + 1)
        )
        if taken.rowcount == 1:
            claimed.append(row)
    return claimed


def _notification(settings: Settings, row: Any) -> Notification:
    body = row.body
    return Notification(
        id=body["id"],
        event_id=body["event_id"],
        program_id=body["program_id"],
        level=body["level"],
        kind=body["kind"],
        roles=tuple(body["roles"]),
        at=dt.datetime.fromisoformat(body["at"]),
        url=event_url(settings, body["event_id"]),
    )


async def deliver_outbox(
    engine: AsyncEngine,
    keyring: Keyring,
    clock: Clock,
    settings: Settings,
    session: aiohttp.ClientSession,
    stream: EventStream,
    rand: random.Random | None = None,
) -> int:
    """Deliver what is due in the outbox once; return how many were delivered."""
    rand = rand or random.Random()
    async with engine.begin() as conn:
        rows = await _claim(conn, clock.now())
    delivered = 0
    for row in rows:
        notification: Notification | Notice
        if row.event_id is None:
            # A reminder or other notice about no event: the webhook only, never dashboards.
            notification = Notice(row.id, row.body)
        else:
            notification = _notification(settings, row)
            if row.attempts == 0:
                # In-process listeners hear each notification once, from the process that
                # claims it first; they are not retried like the webhook.
                stream.publish(notification)
        async with engine.connect() as conn:
            webhook = await oncall.webhook_for(conn, keyring, row.program_id)
        values: dict[str, Any]
        if webhook is None:
            values = {"status": "no_webhook", "last_error": None}
        else:
            try:
                await WebhookNotifier(session, webhook, settings.webhook_timeout_s).deliver(
                    notification
                )
            except DeliveryError as exc:
                attempts = row.attempts + 1
                failed = attempts >= settings.webhook_max_attempts
                values = {
                    "status": "failed" if failed else "pending",
                    "last_error": exc.reason[:200],
                    "next_attempt_at": clock.now()
                    + retry_delay(
                        attempts, rand.random, dt.timedelta(seconds=settings.webhook_retry_base_s)
                    ),
                }
                log.warning(
                    "crisis.webhook_failed",
                    event_id=row.event_id,
                    count=attempts,
                    error_type=exc.reason[:40],
                )
            else:
                values = {"status": "delivered", "delivered_at": clock.now(), "last_error": None}
                delivered += 1
        async with engine.begin() as conn:
            await conn.execute(
                notification_outbox.update()
                .where(notification_outbox.c.id == row.id)
                .values(values)
            )
    return delivered


# Application wiring ------------------------------------------------------------------------


async def _loop(name: str, interval: float, work: Any) -> None:
    while True:
        try:
            await work()
        except (SQLAlchemyError, OSError) as exc:
            # The next pass retries: nothing is lost, the rows stay due.
            log.warning(f"crisis.{name}_failed", error_type=type(exc).__name__)
        except Exception as exc:
            # A deadline runner that dies silently stops paging anyone: log loudly and keep
            # going (a row that always fails stays due and shows up in every pass's log).
            log.exception(f"crisis.{name}_crashed", error_type=type(exc).__name__)
        await asyncio.sleep(interval)


async def crisis_workers(app: web.Application) -> AsyncIterator[None]:
    """A cleanup_ctx: the deadline runner and the outbox sender, for the app's lifetime."""
    settings, engine, keyring, clock = app[SETTINGS], app[ENGINE], app[KEYRING], app[CLOCK]
    stream = app[CRISIS_STREAM]
    session = aiohttp.ClientSession()

    async def timers() -> None:
        await fire_due_timers(engine, keyring, clock, stream=stream, public_url=settings.public_url)

    async def outbox() -> None:
        await deliver_outbox(engine, keyring, clock, settings, session, stream)

    tasks = [
        asyncio.create_task(_loop("timers", settings.timer_poll_s, timers), name="crisis-timers"),
        asyncio.create_task(_loop("outbox", settings.timer_poll_s, outbox), name="crisis-outbox"),
    ]
    app[BACKGROUND].update(tasks)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            app[BACKGROUND].discard(task)
        await session.close()
        stream.close()
