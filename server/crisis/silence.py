"""The silence trigger: a flagged patient with no voice and no video for too long.

CLINICAL.md section 7: a flagged patient who goes silent is a trigger (for a substance-use
patient, silence may be an overdose). During a live session, a patient with an open crisis
event whose media shows no audio-level activity and no video frames for
`IOP_SILENCE_ALERT_SECONDS` raises a `silence` concern through the crisis entry point,
which adds it to the open event. Once per silence episode: the next alert needs voice or
video first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from crisis.escalation import Concern, raise_concern
from rooms.hub import RoomHub
from rooms.model import Member, Presence, RoomRole, RoomState
from server.appkeys import BACKGROUND, CLOCK, ENGINE, KEYRING, ROOMS, SETTINGS
from server.crisis import store as crisis_store
from server.crisis.concerns import SqlConcerns
from server.logs import get_logger
from server.roomsocket.media import MEDIA
from server.storage.tables import programs, sessions

log = get_logger(__name__)


class SilenceWatch:
    """Checks every live room's patients; remembers which silences it already reported."""

    def __init__(self, app: web.Application, monotonic: Callable[[], float] = time.monotonic):
        self._app = app
        self._monotonic = monotonic
        self._watching_since: dict[tuple[str, str], float] = {}
        self._alerted_at: dict[tuple[str, str], float] = {}

    def _last_activity(self, hub: RoomHub, member: Member, now: float) -> float:
        key = (hub.room.id, member.id)
        # A patient who never sent anything has been silent since we started looking.
        start = self._watching_since.setdefault(key, now)
        media = self._app[MEDIA].get(hub.room.id)
        voice, frame = media.activity(member.id) if media is not None else (0.0, 0.0)
        return max(voice, frame, start)

    async def check(self) -> int:
        """One pass over the live rooms; returns how many silence concerns were raised."""
        threshold = self._app[SETTINGS].silence_alert_s
        now = self._monotonic()
        seen: set[tuple[str, str]] = set()
        raised = 0
        for hub in list(self._app[ROOMS]):
            if hub.room.state is not RoomState.LIVE:
                continue
            for member in list(hub.room.members.values()):
                if member.role is not RoomRole.PARTICIPANT:
                    continue
                if member.presence is not Presence.ADMITTED:
                    continue  # a dropped connection has its own prompt (server/crisis/dropwatch.py)
                key = (hub.room.id, member.id)
                seen.add(key)
                last = self._last_activity(hub, member, now)
                alerted = self._alerted_at.get(key)
                if alerted is not None:
                    if last > alerted:
                        del self._alerted_at[key]  # voice or video again: the episode is over
                    continue
                if now - last >= threshold and await self._raise(hub, member, now - last):
                    self._alerted_at[key] = now
                    raised += 1
        for gone in set(self._watching_since) - seen:
            self._watching_since.pop(gone, None)
            self._alerted_at.pop(gone, None)
        return raised

    async def _raise(self, hub: RoomHub, member: Member, silent_s: float) -> bool:
        app = self._app
        async with app[ENGINE].begin() as conn:
            event = await crisis_store.open_event_for(conn, member.identity.id, hub.room.id)
            if event is None:
                return False  # only a patient already flagged in this session
            session = (
                await conn.execute(
                    sa.select(sessions.c.ends_at, programs.c.kind)
                    .join(programs, programs.c.id == sessions.c.program_id)
                    .where(sessions.c.id == hub.room.id)
                )
            ).one()
            # For a substance-use patient silence may be an overdose: that is high.
            level = "high" if session.kind == "substance_use" else "moderate"
            concern = Concern(
                patient_id=event.patient_id,
                session_id=event.session_id,
                trigger="silence",
                level=level,
                rule="no voice and no video from a flagged patient",
                at=app[CLOCK].now(),
                detail={"silent_s": int(silent_s)},
            )
            outcome = await raise_concern(SqlConcerns(conn, app[KEYRING], session.ends_at), concern)
        log.warning("crisis.silence", room_id=hub.room.id, event_id=outcome.id)
        return True

    async def run(self) -> None:
        """Check on the configured interval until cancelled."""
        while True:
            await asyncio.sleep(self._app[SETTINGS].silence_check_s)
            try:
                await self.check()
            except (SQLAlchemyError, OSError) as exc:
                # The next pass retries; the episode was not marked as reported.
                log.warning("crisis.silence_check_failed", error_type=type(exc).__name__)


SILENCE = web.AppKey("silence", SilenceWatch)


async def silence_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the silence watch for the application's life; cancelled and awaited on close."""
    watch = SilenceWatch(app)
    app[SILENCE] = watch
    task = asyncio.create_task(watch.run(), name="silence-watch")
    app[BACKGROUND].add(task)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app[BACKGROUND].discard(task)
