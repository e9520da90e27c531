"""The room journal: what rooms do (presence, session state, clock, concerns), written to storage
without holding them up.

A concern (the help button) does not wait in that queue: it has its own writer and its own
transaction, so a burst of attendance rows never stands between a patient's press and the
supervisor's screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crisis.escalation import Concern, raise_concern
from crisis.ledger import PrivateRoomOpened
from rooms.model import Member
from server import audit
from server.crisis import publish as crisis_publish
from server.crisis import store as crisis_store
from server.crisis import timeline as crisis_timeline
from server.crisis.concerns import SqlConcerns
from server.logs import get_logger
from server.phi import Keyring
from server.storage.tables import attendance_events, sessions
from server.structure.store import save_clock

log = get_logger(__name__)
BATCH = 200
Transaction = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class RoomJournal:
    """Queues presence events, session states and clock changes and writes them in order."""

    def __init__(
        self, engine: AsyncEngine, keyring: Keyring, transaction: Transaction | None = None
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        # Concerns commit through `transaction` (which tells dashboards once committed).
        self._transaction: Transaction = transaction or engine.begin
        self._concerns: asyncio.Queue[tuple[Concern, Callable[[], None] | None, bool]] = (
            asyncio.Queue()
        )
        self._private_rooms: list[tuple[str, str, str, dt.datetime]] = []
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._states: dict[str, str] = {}
        self._clocks: dict[str, dict[str, Any]] = {}
        self._rooms: dict[str, dict[str, Any]] = {}
        self._audits: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._concern_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin writing."""
        self._task = asyncio.create_task(self._run(), name="attendance-writer")
        self._concern_task = asyncio.create_task(self._run_concerns(), name="concern-writer")

    def record(self, session_id: str, member: Member, event: str, at: dt.datetime) -> None:
        """Queue one event (rooms call this synchronously)."""
        self._queue.put_nowait(
            {
                "session_id": session_id,
                "person_type": member.identity.kind,
                "person_id": member.identity.id,
                "role": member.role.value,
                "event": event,
                "at": at,
            }
        )

    def session_state(self, session_id: str, state: str) -> None:
        """Remember a room's new state (open, live, ended) for its session row."""
        self._states[session_id] = state
        self._queue.put_nowait({})

    def clock(
        self, session_id: str, state: dict[str, Any], audit_row: dict[str, Any] | None
    ) -> None:
        """Remember a clock's latest state; `audit_row` goes to the audit trail with it."""
        self._clocks[session_id] = state
        if audit_row is not None:
            self._audits.append(audit_row)
        self._queue.put_nowait({})

    def audit(self, row: dict[str, Any]) -> None:
        """An audit row (`audit.record`'s arguments), written with the next batch."""
        self._audits.append(row)
        self._queue.put_nowait({})

    def room_state(self, session_id: str, state: dict[str, Any]) -> None:
        """Remember who is in a live room (ids, roles, flags) for a takeover."""
        self._rooms[session_id] = state
        self._queue.put_nowait({})

    def concern(
        self, concern: Concern, stored: Callable[[], None] | None = None, *, fold: bool = False
    ) -> None:
        """A concern raised in a room (the help button) goes to the crisis entry point now;
        `stored` is called once it is committed. `fold`: a repeat past the help rate,
        added to the open event without paging again."""
        self._concerns.put_nowait((concern, stored, fold))

    async def _run_concerns(self) -> None:
        while True:
            concern, stored, fold = await self._concerns.get()
            try:
                if await self._write_concern(concern, fold) and stored is not None:
                    stored()
            finally:
                self._concerns.task_done()

    async def _write_concern(self, concern: Concern, fold: bool = False) -> bool:
        for attempt in range(5):
            try:
                async with self._transaction() as conn:
                    ends = await conn.scalar(
                        sa.select(sessions.c.ends_at).where(sessions.c.id == concern.session_id)
                    )
                    if fold:
                        await crisis_store.fold_concern(conn, self._keyring, concern)
                    else:
                        await raise_concern(SqlConcerns(conn, self._keyring, ends), concern)
                return True
            except (SQLAlchemyError, OSError) as exc:
                log.warning("crisis.concern_write_failed", error_type=type(exc).__name__)
                await asyncio.sleep(0.05 * 2**attempt)
        log.error("crisis.concern_dropped", session_id=concern.session_id)
        return False

    def private_room(
        self, session_id: str, patient_id: str, clinician_id: str, at: dt.datetime
    ) -> None:
        """A clinician took a patient to a private room: a step on their open event."""
        self._private_rooms.append((session_id, patient_id, clinician_id, at))
        self._queue.put_nowait({})

    async def _run(self) -> None:
        while True:
            rows = [await self._queue.get()]
            while not self._queue.empty() and len(rows) < BATCH:
                rows.append(self._queue.get_nowait())
            try:
                await self._write(rows)
            finally:
                for _ in rows:
                    self._queue.task_done()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        events = [row for row in rows if row]
        states, self._states = self._states, {}
        clocks, self._clocks = self._clocks, {}
        rooms, self._rooms = self._rooms, {}
        audits, self._audits = self._audits, []
        private_rooms, self._private_rooms = self._private_rooms, []
        for attempt in range(5):
            try:
                async with self._engine.begin() as conn:
                    if events:
                        await conn.execute(attendance_events.insert(), events)
                    for session_id, state in states.items():
                        await conn.execute(
                            sessions.update().where(sessions.c.id == session_id).values(state=state)
                        )
                    for session_id, room in rooms.items():
                        await conn.execute(
                            sessions.update()
                            .where(sessions.c.id == session_id)
                            .values(room_state=room)
                        )
                    now = dt.datetime.now(dt.UTC)
                    for session_id, clock in clocks.items():
                        await save_clock(conn, session_id, clock, now)
                    for row in audits:
                        await audit.record(conn, self._keyring, **row)
                    for session_id, patient_id, clinician_id, at in private_rooms:
                        event = await crisis_store.open_event_for(conn, patient_id, session_id)
                        if event is not None:
                            await crisis_timeline.append_step(
                                conn,
                                self._keyring,
                                event.id,
                                PrivateRoomOpened(room_id=session_id),
                                audit.Actor("staff", clinician_id, "clinician"),
                                at,
                            )
                return
            except (SQLAlchemyError, OSError) as exc:
                log.warning("attendance.write_failed", error_type=type(exc).__name__, count=attempt)
                await asyncio.sleep(0.2 * 2**attempt)
        log.error("attendance.dropped", count=len(rows))

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._concerns.join()
        await self._queue.join()

    async def _drain(self) -> None:
        while not self._concerns.empty():
            concern = self._concerns.get_nowait()
            self._concerns.task_done()
            await self._write_concern(concern)
        rows = []
        while not self._queue.empty():
            rows.append(self._queue.get_nowait())
            self._queue.task_done()
        if rows or self._states or self._clocks or self._audits:
            await self._write(rows)

    async def close(self) -> None:
        """Let the writers finish what is queued, then stop them (never mid-transaction)."""
        for task, queue in ((self._concern_task, self._concerns), (self._task, self._queue)):
            if task is None:
                continue
            if not task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.join(), timeout=10)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drain()


def journal_ctx(key: web.AppKey[RoomJournal], engine_key: Any, keyring_key: Any) -> Any:
    """A cleanup_ctx that runs the writer for the application's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        writer = RoomJournal(
            app[engine_key], app[keyring_key], lambda: crisis_publish.transaction(app)
        )
        writer.start()
        app[key] = writer
        try:
            yield
        finally:
            await writer.close()

    return ctx


# The live rooms' write-behind recorder (attendance, room and clock state, concerns).
ROOM_JOURNAL = web.AppKey("room_journal", RoomJournal)
