"""Room pages: the staff view of a session's room and the patient's waiting room and room."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from rooms.model import PERMISSIONS, RoomAction
from server.accounts.auth import STAFF_KEY
from server.accounts.joinlinks import link_state, patient_sessions
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.caseload.pages import local_time
from server.consent.templates import offers_pending
from server.render import render
from server.roomsocket import placement
from server.roomsocket.access import CheckinRequired, ConsentRequired, Entry, current_link, resolve


def _media_context(request: web.Request, entry: Entry) -> dict[str, object]:
    return {
        "video_kbps": request.app[SETTINGS].video_kbps,
        "may_share": RoomAction.SHARE_SCREEN in PERMISSIONS[entry.role],
        "relay_only": request.app[SETTINGS].ice_force_relay,
    }


async def staff_room(request: web.Request) -> web.Response:
    """A session's room for its host, co-host or an observing supervisor."""
    entry = await resolve(request, request.match_info["room_id"])
    if entry.identity.kind != "staff":
        raise web.HTTPSeeOther("/room")
    who = request.get(STAFF_KEY)
    if who is not None and who.locked:
        # The room lists patients by name: a locked screen opens it after the password.
        raise web.HTTPSeeOther(f"/unlock?next={quote(request.path_qs, safe='')}")
    await placement.redirect_page(request, entry.room.id)
    context = {
        "entry": entry,
        "starts_local": local_time(entry.room.starts_at, entry.room.time_zone),
        "ws_path": placement.ws_path(request.app, entry.room.id),
        "live_room": True,
        **_media_context(request, entry),
    }
    return await render(request, "room.html", context)


async def patient_room(request: web.Request) -> web.Response:
    """The patient's waiting room, which becomes the room when a clinician admits them."""
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
        if link is None or link_state(link, now) != "active":
            raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
        session_id = link.session_id
        if session_id is None:
            upcoming = await patient_sessions(conn, link.patient_id, now)
            if not upcoming:
                raise web.HTTPNotFound(reason="There is no session for you right now.")
            session_id = upcoming[0].session_id
    try:
        entry = await resolve(request, session_id)
    except ConsentRequired:
        raise web.HTTPSeeOther("/consent") from None
    except CheckinRequired:
        raise web.HTTPSeeOther("/checkin") from None
    async with request.app[ENGINE].connect() as conn:
        # Optional consents are asked once on the way in; declining them does not stop entry.
        if await offers_pending(conn, request.app[KEYRING], link.patient_id, entry.room.id):
            raise web.HTTPSeeOther("/consent")
    await placement.redirect_page(request, entry.room.id)
    context = {
        "entry": entry,
        "starts_local": local_time(entry.room.starts_at, entry.room.time_zone),
        "ws_path": placement.ws_path(request.app, entry.room.id),
        "program_phone": link.program_phone,
        **_media_context(request, entry),
    }
    return await render(request, "patient_room.html", context)


def add_routes(app: web.Application) -> None:
    """Register the room pages."""
    app.router.add_get("/rooms/{room_id}", staff_room)
    app.router.add_get("/room", patient_room)
