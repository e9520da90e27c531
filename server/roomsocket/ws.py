"""The room WebSocket: one read loop and one write loop per connection, over rooms/hub.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rooms import protocol
from rooms.closecodes import CloseCode
from rooms.hub import RoomHub
from rooms.model import RoomError, RoomRole
from rooms.registry import RoomRegistry
from server.accounts import joinlinks
from server.accounts import linksockets as link_sockets
from server.accounts import livesockets as staff_sockets
from server.accounts.auth import STAFF_KEY
from server.appkeys import CLOCK, ENGINE, KEYRING, ROOMS, SOCKETS
from server.crisis import dropwatch
from server.family import links as family_links
from server.logs import get_logger
from server.roomsocket import media, placement, timers
from server.roomsocket import origin as wsorigin
from server.roomsocket.access import Entry, resolve
from server.roomsocket.events import hub_for
from server.roomsocket.journal import ROOM_JOURNAL, journal_ctx
from server.websocket import SocketParticipant, hello, read_loop, refuse

log = get_logger(__name__)


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


async def _support_link_active(request: web.Request, link_id: str) -> bool:
    async with request.app[ENGINE].connect() as conn:
        link = await family_links.get(conn, link_id)
    return link is not None and family_links.link_state(link, request.app[CLOCK].now()) == "active"


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
        said = await hello(
            ws, protocol.parse, protocol.Hello, protocol.PROTOCOL_VERSION, "protocol"
        )
        if said is None:
            return ws
        if _locked_out(request, entry):
            await refuse(ws, "locked", LOCKED_REASON, CloseCode.SCREEN_LOCKED)
            return ws
        if entry.role is RoomRole.PARTICIPANT:
            try:
                request.app[ROOMS].check_single_room(entry.identity.key, entry.room.id)
            except RoomError as exc:
                await refuse(ws, exc.code, exc.reason, CloseCode.REFUSED)
                return ws
        try:
            holder = await placement.elsewhere(
                request.app, entry.room.id, request.query.get("node")
            )
        except placement.Unavailable as exc:
            await refuse(ws, "try_again", str(exc), CloseCode.TRY_AGAIN)
            return ws
        if holder is not None:
            await ws.send_json(
                placement.redirect_message(holder, entry.room.id, entry.identity.kind)
            )
            await ws.close(code=CloseCode.REDIRECT, message=b"the room is on another node")
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
                said.last_seq,
                staff_info=entry.staff_info,
            )
        except RoomError as exc:
            participant.send({"type": "error", "code": exc.code, "reason": exc.reason})
            await participant.close(CloseCode.REFUSED, exc.reason)
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
                    await participant.close(CloseCode.LINK_REVOKED, link_sockets.REASON)
                    return ws
                await _read_loop(request.app, ws, hub, participant)
        elif entry.support_link_id is not None:
            # A support person's link: revoking it (or the patient's release) closes this.
            with link_sockets.tracked(request.app, entry.support_link_id, ws):
                if not await _support_link_active(request, entry.support_link_id):
                    await participant.close(CloseCode.LINK_REVOKED, link_sockets.REASON)
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


def _dispatch(
    app: web.Application, hub: RoomHub, me: SocketParticipant
) -> Callable[[Any], Awaitable[None]]:
    async def dispatch(parsed: Any) -> None:
        # Every message, media and drop steps included, goes through the room's one
        # dispatch table and its permission check.
        await _close_all(await hub.dispatch(me, parsed))

    return dispatch


async def _read_loop(
    app: web.Application, ws: web.WebSocketResponse, hub: RoomHub, me: SocketParticipant
) -> None:
    await read_loop(ws, me, protocol.parse, protocol.Hello, _dispatch(app, hub, me))


async def _close_sockets(app: web.Application) -> None:
    # on_shutdown runs before handlers are awaited: open sockets would otherwise hold
    # shutdown up until its timeout.
    for hub in app[ROOMS]:
        hub.close()
    for ws in list(app[SOCKETS]):
        await ws.close(code=CloseCode.SHUTDOWN, message=b"server shutting down")


def setup(app: web.Application) -> None:
    """Register the room socket, the live-room registry and the attendance writer."""
    app[ROOMS] = RoomRegistry()
    app[SOCKETS] = set()
    app.router.add_get("/ws/rooms/{room_id}", room_socket)
    # Before the recorder: on shutdown the recorder writes everything out, then the
    # leases are freed, so the node taking a room over reads its latest clock.
    app.cleanup_ctx.append(placement.cluster_ctx)
    app.cleanup_ctx.append(journal_ctx(ROOM_JOURNAL, ENGINE, KEYRING))
    app.cleanup_ctx.append(timers.room_timers)
    dropwatch.setup(app)
    app.on_shutdown.append(_close_sockets)
