"""The supervisor dashboard: its page, its WebSocket, and the hub that feeds every socket.

One `DashboardHub` per process subscribes once to the crisis `EventStream` and fans each
notification out to the connected dashboards that may see that event; it also watches the
live rooms and sends a viewer the session list when its counts change. Each socket has one
read loop and one bounded write loop (server/websocket.py, shared with the room socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from crisis import ledger
from crisis.notify import Notification, StreamClosedError
from server.accounts import livesockets as staff_sockets
from server.accounts.auth import StaffIdentity, audit_event, identity, requires
from server.accounts.permissions import Action, Role, allowed
from server.appkeys import BACKGROUND, CLOCK, CRISIS_STREAM, ENGINE, KEYRING, ROOMS, SOCKETS
from server.cluster import roomcounts as cluster_views
from server.crisis import publish as crisis_publish
from server.crisis import store as crisis_store
from server.crisis.api import can_see
from server.dashboard import protocol as dp
from server.dashboard import views as dashboard_views
from server.logs import get_logger
from server.render import render
from server.roomsocket import origin as wsorigin
from server.websocket import SocketParticipant, hello, read_loop

log = get_logger(__name__)
SESSIONS_TICK_S = 1.0
SCHEDULE_REFRESH_S = 30.0


@dataclass(eq=False)
class Viewer:
    """One connected dashboard: who is looking, and its outbox."""

    who: StaffIdentity
    out: SocketParticipant
    ready: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] | None = None

    @property
    def program_id(self) -> str | None:
        return None if self.who.role is Role.ADMIN else self.who.program_id

    def send(self, message: dict[str, Any]) -> None:
        """Send, or hold until the snapshot has gone out (so nothing lands before it)."""
        if self.ready:
            self.out.send(message)
        else:
            self.held.append(message)

    def release(self) -> None:
        """The snapshot is out: send what arrived meanwhile."""
        self.ready = True
        held, self.held = self.held, []
        for message in held:
            self.out.send(message)


class DashboardHub:
    """Fan-out of crisis changes and live session counts to this process's dashboards."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._viewers: set[Viewer] = set()
        self._rows: dict[str, dict[str, Any]] = {}
        self._rows_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Listen to the crisis stream and watch the rooms."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="dashboard-listen"),
            asyncio.create_task(self._tick(), name="dashboard-tick"),
        ]
        self._app[BACKGROUND].update(self._tasks)

    async def close(self) -> None:
        """Stop both loops and wait for them."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._app[BACKGROUND].discard(task)
        self._tasks = []

    def add(self, viewer: Viewer) -> None:
        """A dashboard connected (it gets changes from now on, after its snapshot)."""
        self._viewers.add(viewer)

    def remove(self, viewer: Viewer) -> None:
        """A dashboard went away."""
        self._viewers.discard(viewer)

    @property
    def viewers(self) -> int:
        """How many dashboards are connected to this process."""
        return len(self._viewers)

    # Crisis events ------------------------------------------------------------------------

    async def _listen(self) -> None:
        stream = self._app[CRISIS_STREAM]
        while True:
            try:
                subscription = stream.subscribe()
            except StreamClosedError:
                return
            try:
                while True:
                    notification = await subscription.next()
                    try:
                        await self._fan_out(notification)
                    except Exception as exc:
                        # One unreadable event must not deafen every dashboard.
                        log.exception("dashboard.fan_out_failed", error_type=type(exc).__name__)
            except StreamClosedError:
                if not subscription.dropped:
                    return
                # Fell behind: start again and give every dashboard a fresh snapshot.
                log.warning("dashboard.resync", count=len(self._viewers))
                for viewer in list(self._viewers):
                    await self.send_snapshot(viewer)
            finally:
                subscription.close()

    async def _visible(
        self,
        conn: Any,
        viewer: Viewer,
        event: ledger.Event,
        holders: dict[str, str | None] | None = None,
    ) -> bool:
        if viewer.program_id is not None and event.program_id != viewer.program_id:
            return False
        if holders is not None and viewer.who.id in holders.values():
            return True  # the session's clinician or on call for the program: on the event
        return await can_see(conn, viewer.who, event, self._app[CLOCK].now())

    async def _fan_out(self, notification: Notification) -> None:
        if not self._viewers:
            return
        now = self._app[CLOCK].now()
        async with self._app[ENGINE].connect() as conn:
            try:
                event = await crisis_store.get_event(conn, notification.event_id)
            except crisis_store.EventNotFoundError:
                return
            holders = await crisis_store.holders_of(conn, event, now)
            audience = [
                v for v in list(self._viewers) if await self._visible(conn, v, event, holders)
            ]
            if not audience:
                return
            (view,) = await dashboard_views.event_views(
                conn, self._app[KEYRING], [event], self._app[ROOMS], now, {event.id: holders}
            )
        message = {
            "type": "event",
            "kind": notification.kind,
            "notification_id": notification.id,
            "event": view,
            "server_time": now.timestamp(),
        }
        for viewer in audience:
            viewer.send(message)

    async def events_for(self, conn: Any, viewer: Viewer) -> list[dict[str, Any]]:
        """The open events this viewer may see, as the dashboard shows them."""
        found = await crisis_store.open_events_for_programs(
            conn, None if viewer.program_id is None else [viewer.program_id]
        )
        visible = [event for event in found if await self._visible(conn, viewer, event)]
        return await dashboard_views.event_views(
            conn, self._app[KEYRING], visible, self._app[ROOMS], self._app[CLOCK].now()
        )

    # Sessions -----------------------------------------------------------------------------

    async def _session_rows(
        self, live_ids: list[str], force: bool = False
    ) -> dict[str, dict[str, Any]]:
        stale = time.monotonic() - self._rows_at > SCHEDULE_REFRESH_S
        if force or stale or any(room_id not in self._rows for room_id in live_ids):
            async with self._app[ENGINE].connect() as conn:
                self._rows = await dashboard_views.session_rows(
                    conn, self._app[CLOCK].now(), live_ids
                )
            self._rows_at = time.monotonic()
        return self._rows

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(SESSIONS_TICK_S)
            if not self._viewers:
                continue
            live = await cluster_views.live_counts(self._app)
            try:
                rows = await self._session_rows(list(live))
            except (SQLAlchemyError, OSError) as exc:
                log.warning("dashboard.sessions_failed", error_type=type(exc).__name__)
                continue
            for viewer in list(self._viewers):
                if not viewer.ready:
                    continue
                view = dashboard_views.sessions_view(rows, live, viewer.program_id)
                if view != viewer.sessions:
                    viewer.sessions = view
                    viewer.send({"type": "sessions", "sessions": view})

    # Snapshot -----------------------------------------------------------------------------

    async def snapshot(self, viewer: Viewer) -> dict[str, Any]:
        """Everything a dashboard starts (or restarts) from."""
        live = await cluster_views.live_counts(self._app)
        rows = await self._session_rows(list(live), force=True)
        viewer.sessions = dashboard_views.sessions_view(rows, live, viewer.program_id)
        async with self._app[ENGINE].connect() as conn:
            events = await self.events_for(conn, viewer)
        who = viewer.who
        return {
            "type": "snapshot",
            "protocol": dp.PROTOCOL_VERSION,
            "server_time": self._app[CLOCK].now().timestamp(),
            "you": {"id": who.id, "name": who.display_name, "role": who.role.value},
            "sessions": viewer.sessions,
            "events": events,
        }

    async def send_snapshot(self, viewer: Viewer) -> None:
        """Send a full snapshot, then whatever was held back while it was built."""
        viewer.ready = False
        viewer.out.send(await self.snapshot(viewer))
        viewer.release()


DASHBOARD = web.AppKey("dashboard", DashboardHub)


# Actions ------------------------------------------------------------------------------------


class ActionRefused(Exception):
    """An action the dashboard refuses, with a code and a reason safe to show."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


Act = Callable[[Any, ledger.Event], Awaitable[None]]


async def _on_event(request: web.Request, event_id: str, action: str, act: Act) -> None:
    """Run one action on an event inside a transaction that tells dashboards when it commits."""
    who = identity(request)
    needed = Action.CRISIS_SIGN_OFF if action == "sign_off" else Action.CRISIS_ACT
    if not allowed(who.role, needed):
        raise ActionRefused("forbidden", "your role does not allow this")
    app = request.app
    try:
        async with crisis_publish.transaction(app) as conn:
            try:
                event = await crisis_store.get_event(conn, event_id, lock=True)
            except crisis_store.EventNotFoundError:
                raise ActionRefused("not_found", "no such crisis event") from None
            if not await can_see(conn, who, event, app[CLOCK].now()):
                raise ActionRefused("forbidden", "only the staff on this event may act on it")
            await act(conn, event)
            await audit_event(
                request,
                conn,
                f"crisis.{action}",
                target_type="crisis_event",
                target_id=event.id,
                detail={"via": "dashboard"},
            )
    except ledger.InvalidStepError as exc:
        raise ActionRefused("invalid", f"{exc.field}: {exc.reason}") from None
    except ledger.InvalidStateError as exc:
        raise ActionRefused("conflict", str(exc)) from None
    except crisis_store.AssignmentError as exc:
        raise ActionRefused("invalid", exc.reason) from None


async def _handle_action(request: web.Request, message: Any) -> None:
    who = identity(request)
    app = request.app
    keyring = app[KEYRING]
    now = app[CLOCK].now()

    if isinstance(message, dp.Ack):

        async def act(conn: Any, event: ledger.Event) -> None:
            await crisis_store.acknowledge(conn, keyring, event.id, who.actor, now, message.note)

        await _on_event(request, message.event_id, "acknowledged", act)
    elif isinstance(message, dp.TakeOver):

        async def act(conn: Any, event: ledger.Event) -> None:
            await crisis_store.assign(conn, keyring, event.id, who.id, who.actor, now)

        await _on_event(request, message.event_id, "assigned", act)
    elif isinstance(message, dp.Reassign):

        async def act(conn: Any, event: ledger.Event) -> None:
            await crisis_store.assign(
                conn, keyring, event.id, message.staff_id, who.actor, now, message.note
            )

        await _on_event(request, message.event_id, "assigned", act)
    elif isinstance(message, dp.AddNote):

        async def act(conn: Any, event: ledger.Event) -> None:
            await crisis_store.record_step(
                conn, keyring, event.id, "note", {"note": message.text}, who.actor, now
            )

        await _on_event(request, message.event_id, "step_recorded", act)
    elif isinstance(message, dp.SignOff):

        async def act(conn: Any, event: ledger.Event) -> None:
            await crisis_store.sign_off(conn, keyring, event.id, who.actor, now, message.note)

        await _on_event(request, message.event_id, "signed_off", act)


# The socket ---------------------------------------------------------------------------------


@requires(Action.SUPERVISION_VIEW)
async def dashboard_socket(request: web.Request) -> web.StreamResponse:
    """GET /ws/dashboard: live sessions and crisis events for supervisors and admins."""
    await wsorigin.check(request)
    who = identity(request)
    ws = web.WebSocketResponse(max_msg_size=4 * dp.MAX_FRAME_BYTES)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    hub = request.app[DASHBOARD]
    participant = SocketParticipant(ws, f"dashboard:{who.id}")
    viewer: Viewer | None = None
    try:
        if not await hello(ws, dp.parse, dp.Hello, dp.PROTOCOL_VERSION, "dashboard protocol"):
            return ws
        participant.start()
        viewer = Viewer(who, participant)
        hub.add(viewer)
        await hub.send_snapshot(viewer)
        log.info("dashboard.connected", user_id=who.id)
        with staff_sockets.tracked(request.app, who.id, ws):
            await read_loop(
                ws,
                participant,
                dp.parse,
                dp.Hello,
                _dispatch(request, participant),
                error_fields={"ref": ""},
            )
    finally:
        if viewer is not None:
            hub.remove(viewer)
        await participant.stop()
        request.app[SOCKETS].discard(ws)
    return ws


def _dispatch(request: web.Request, me: SocketParticipant) -> Callable[[Any], Awaitable[None]]:
    clock = request.app[CLOCK]

    async def dispatch(message: Any) -> None:
        if isinstance(message, dp.Ping):
            me.send({"type": "pong", "t": message.t, "server_time": clock.now().timestamp()})
            return
        try:
            await _handle_action(request, message)
        except ActionRefused as exc:
            me.send({"type": "error", "code": exc.code, "reason": exc.reason, "ref": message.ref})
            return
        me.send(
            {
                "type": "done",
                "action": message.type,
                "event_id": message.event_id,
                "ref": message.ref,
            }
        )

    return dispatch


# The page -----------------------------------------------------------------------------------


@requires(Action.SUPERVISION_VIEW)
async def supervisor_page(request: web.Request) -> web.Response:
    """GET /supervisor: the dashboard's page; everything on it arrives over the socket."""
    who = identity(request)
    # A crisis screen is never hidden for inactivity (CLINICAL.md section 8): no idle lock.
    return await render(request, "supervisor.html", {"who": who, "live_room": True})


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = DashboardHub(app)
    app[DASHBOARD] = hub
    hub.start()
    try:
        yield
    finally:
        await hub.close()


def setup(app: web.Application) -> None:
    """Register the dashboard page and socket and run the hub for the app's lifetime."""
    app.router.add_get("/supervisor", supervisor_page)
    app.router.add_get("/ws/dashboard", dashboard_socket)
    app.cleanup_ctx.append(_hub_ctx)
