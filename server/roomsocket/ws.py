"""The room WebSocket: one read loop and one write loop per connection, over rooms/hub.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import WSMsgType, web

from rooms import protocol
from rooms.hub import RoomHub
from rooms.model import RoomError, RoomRole
from rooms.registry import RoomRegistry
from server.accounts import joinlinks
from server.accounts import linksockets as link_sockets
from server.accounts import livesockets as staff_sockets
from server.accounts.auth import STAFF_KEY
from server.appkeys import CLOCK, ENGINE, KEYRING, ROOMS, SOCKETS
from server.crisis import dropwatch
from server.logs import get_logger
from server.roomsocket import media, placement
from server.roomsocket import origin as wsorigin
from server.roomsocket.access import Entry, resolve
from server.roomsocket.events import hub_for
from server.roomsocket.journal import ROOM_JOURNAL, journal_ctx

log = get_logger(__name__)
OUTBOX_LIMIT = 256
HELLO_TIMEOUT_S = 10.0
# Clients ping every 10 s; a connection silent for three of those is gone.
IDLE_TIMEOUT_S = 35.0
ERROR_BUDGET = 20  # invalid messages tolerated per window before the connection is closed
ERROR_WINDOW_S = 10.0
CLOSE_PROTOCOL = 4400
CLOSE_REFUSED = 4403
CLOSE_FLOOD = 4429
CLOSE_SLOW = 4408
CLOSE_SHUTDOWN = 1001


class SocketParticipant:
    """A WebSocket as the room sees it: a bounded outbox drained by one writer task."""

    def __init__(self, ws: web.WebSocketResponse, member_id: str) -> None:
        self.member_id = member_id
        self._ws = ws
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin draining the outbox."""
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.member_id}")

    def send(self, message: dict[str, Any]) -> bool:
        """Queue a message; a client too slow to take it is closed and will resync."""
        try:
            self._outbox.put_nowait(json.dumps(message, separators=(",", ":")))
        except asyncio.QueueFull:
            if self._closer is None:
                self._closer = asyncio.create_task(self.close(CLOSE_SLOW, "too slow to keep up"))
            return False
        return True

    async def _write_loop(self) -> None:
        while True:
            frame = await self._outbox.get()
            try:
                await self._ws.send_str(frame)
            except (ConnectionResetError, RuntimeError):
                return
            finally:
                self._outbox.task_done()

    async def close(self, code: int, reason: str) -> None:
        """Flush what is queued, then close with a code the client understands."""
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), timeout=2.0)
        await self._ws.close(code=code, message=reason.encode())

    async def stop(self) -> None:
        """Stop the writer (and a pending close) and wait for them."""
        for task in (self._writer, self._closer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _refuse(ws: web.WebSocketResponse, code: str, reason: str, close: int) -> None:
    await ws.send_json({"type": "error", "code": code, "reason": reason})
    await ws.close(code=close, message=reason.encode())


async def _hello(ws: web.WebSocketResponse) -> protocol.Hello | None:
    try:
        first = await ws.receive(timeout=HELLO_TIMEOUT_S)
    except TimeoutError:
        await _refuse(ws, "hello_required", "say hello first", CLOSE_PROTOCOL)
        return None
    if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    try:
        message = protocol.parse(first.data)
    except protocol.ProtocolError as exc:
        await _refuse(ws, exc.code, exc.reason, CLOSE_PROTOCOL)
        return None
    if not isinstance(message, protocol.Hello):
        await _refuse(ws, "hello_required", "the first message must be hello", CLOSE_PROTOCOL)
        return None
    if message.protocol != protocol.PROTOCOL_VERSION:
        await _refuse(
            ws,
            "protocol_version",
            f"this server speaks protocol {protocol.PROTOCOL_VERSION}",
            CLOSE_PROTOCOL,
        )
        return None
    return message


LOCKED_REASON = "the screen is locked: unlock it to open the room"


def _locked_out(request: web.Request, entry: Entry) -> bool:
    """A locked staff screen opens no room; one already in the live call keeps it.

    The idle lock never ends a live call (CLINICAL.md section 8): a member still admitted
    or reconnecting here comes back after a dropped connection without the password.
    """
    who = request.get(STAFF_KEY)
    if entry.identity.kind != "staff" or who is None or not who.locked:
        return False
    hub = request.app[ROOMS].get(entry.room.id)
    member = hub.room.members.get(entry.identity.key) if hub is not None else None
    return member is None or not member.in_room


async def _link_active(request: web.Request, link_id: str) -> bool:
    async with request.app[ENGINE].connect() as conn:
        link = await joinlinks.get(conn, link_id)
    return link is not None and joinlinks.link_state(link, request.app[CLOCK].now()) == "active"


async def _close_all(closing: list[tuple[Any, int, str]]) -> None:
    # Concurrently: each close waits for its client's reply, and one slow client must not
    # hold up telling the others.
    await asyncio.gather(*(connection.close(code, reason) for connection, code, reason in closing))


async def room_socket(request: web.Request) -> web.StreamResponse:
    """GET /ws/rooms/{room_id}: the signaling connection for staff and patients."""
    await wsorigin.check(request)
    entry = await resolve(request, request.match_info["room_id"])
    ws = web.WebSocketResponse(max_msg_size=4 * protocol.MAX_FRAME_BYTES)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    participant: SocketParticipant | None = None
    hub: RoomHub | None = None
    try:
        hello = await _hello(ws)
        if hello is None:
            return ws
        if _locked_out(request, entry):
            await _refuse(ws, "locked", LOCKED_REASON, CLOSE_REFUSED)
            return ws
        if entry.role is RoomRole.PARTICIPANT:
            try:
                request.app[ROOMS].check_single_room(entry.identity.key, entry.room.id)
            except RoomError as exc:
                await _refuse(ws, exc.code, exc.reason, CLOSE_REFUSED)
                return ws
        try:
            holder = await placement.elsewhere(
                request.app, entry.room.id, request.query.get("node")
            )
        except placement.Unavailable as exc:
            await _refuse(ws, "try_again", str(exc), placement.CLOSE_TRY_AGAIN)
            return ws
        if holder is not None:
            await ws.send_json(
                placement.redirect_message(holder, entry.room.id, entry.identity.kind)
            )
            await ws.close(code=placement.CLOSE_REDIRECT, message=b"the room is on another node")
            return ws
        hub = await hub_for(request, entry)
        participant = SocketParticipant(ws, entry.identity.key)
        participant.start()
        try:
            hub.connect(
                participant,
                entry.identity,
                entry.role,
                entry.name,
                hello.last_seq,
                staff_info=entry.staff_info,
            )
        except RoomError as exc:
            participant.send({"type": "error", "code": exc.code, "reason": exc.reason})
            await participant.close(CLOSE_REFUSED, exc.reason)
            hub = None
            return ws
        await _close_all(hub.take_closing())
        log.info("room.connected", room_id=entry.room.id, role=entry.role.value)
        if entry.identity.kind == "staff":
            with staff_sockets.tracked(request.app, entry.identity.id, ws):
                await _read_loop(request.app, ws, hub, participant)
        elif entry.link_id is not None:
            with link_sockets.tracked(request.app, entry.link_id, ws):
                # Revoked since the upgrade was let in (while saying hello, say)?
                if not await _link_active(request, entry.link_id):
                    await participant.close(link_sockets.CLOSE_LINK_REVOKED, link_sockets.REASON)
                    return ws
                await _read_loop(request.app, ws, hub, participant)
    finally:
        if hub is not None and participant is not None:
            hub.disconnect(participant)
            await _close_all(hub.take_closing())
            if hub.ended and hub.connected == 0:
                request.app[ROOMS].drop(entry.room.id)
                await media.close_room(request.app, entry.room.id)
                await placement.room_closed(request.app, entry.room.id)
        if participant is not None:
            await participant.stop()
        request.app[SOCKETS].discard(ws)
    return ws


async def _read_loop(
    app: web.Application, ws: web.WebSocketResponse, hub: RoomHub, me: SocketParticipant
) -> None:
    errors: list[float] = []
    while not ws.closed:
        try:
            message = await ws.receive(timeout=IDLE_TIMEOUT_S)
        except TimeoutError:
            await me.close(CLOSE_PROTOCOL, "no heartbeat")
            return
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return
        if message.type is WSMsgType.ERROR:
            return
        try:
            parsed = protocol.parse(message.data)
            if isinstance(parsed, protocol.Hello):
                raise protocol.ProtocolError("unexpected", "hello was already said")
            await _close_all(await hub.dispatch(me, parsed))
        except protocol.ProtocolError as exc:
            me.send({"type": "error", "code": exc.code, "reason": exc.reason})
            now = time.monotonic()
            errors = [t for t in errors if now - t < ERROR_WINDOW_S] + [now]
            if len(errors) > ERROR_BUDGET:
                await me.close(CLOSE_FLOOD, "too many invalid messages")
                return


async def _close_sockets(app: web.Application) -> None:
    # on_shutdown runs before handlers are awaited: open sockets would otherwise hold
    # shutdown up until its timeout.
    for hub in app[ROOMS]:
        hub.close()
    for ws in list(app[SOCKETS]):
        await ws.close(code=CLOSE_SHUTDOWN, message=b"server shutting down")


def setup(app: web.Application) -> None:
    """Register the room socket, the live-room registry and the attendance writer."""
    app[ROOMS] = RoomRegistry()
    app[SOCKETS] = set()
    app.router.add_get("/ws/rooms/{room_id}", room_socket)
    # Before the recorder: on shutdown the recorder writes everything out, then the
    # leases are freed, so the node taking a room over reads its latest clock.
    app.cleanup_ctx.append(placement.cluster_ctx)
    app.cleanup_ctx.append(journal_ctx(ROOM_JOURNAL, ENGINE, KEYRING))
    dropwatch.setup(app)
    app.on_shutdown.append(_close_sockets)
