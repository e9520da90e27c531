"""The room WebSocket's media messages, adapted onto rooms/media (the SFU)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rooms import protocol
from rooms.hub import RoomHub
from rooms.media import hooks
from rooms.media.room import MediaError, MediaRoom, MediaSettings
from rooms.model import PERMISSIONS, Member, Presence, RoomAction, RoomRole
from server.appkeys import CLOCK, SETTINGS
from server.logs import get_logger
from server.roomsocket import turn

log = get_logger(__name__)


class MediaRooms(dict[str, MediaRoom]):
    """The live rooms' media, by room id."""


MEDIA = web.AppKey("media", MediaRooms)


def media_for(app: web.Application, hub: RoomHub) -> MediaRoom:
    """The room's SFU, created with the hub's hooks on first use."""
    rooms = app[MEDIA]
    existing = rooms.get(hub.room.id)
    if existing is not None:
        return existing
    settings = app[SETTINGS]

    def signal(member_id: str, message: dict[str, Any]) -> None:
        hub.broadcast(frozenset({member_id}), message)

    def on_speaker(member_id: str) -> None:
        hub.broadcast(hub.in_room_ids(), {"type": "speaker", "member_id": member_id})

    codecs = tuple(f"video/{'VP8' if c == 'vp8' else 'H264'}" for c in settings.video_codecs)
    media = MediaRoom(
        hub.room.id,
        signal,
        settings=MediaSettings(
            video_codecs=codecs,
            camera_bps=settings.video_kbps * 1000,
            screen_bps=settings.screen_kbps * 1000,
        ),
        on_speaker=on_speaker,
    )
    for member in hub.room.members.values():
        media.set_space(member.id, member.space)
    rooms[hub.room.id] = media
    return media


def member_changed(app: web.Application, room_id: str, member: Member) -> None:
    """Keep media in step with the room: who may send, and who has gone."""
    room = app[MEDIA].get(room_id)
    if room is None:
        return
    room.set_blocked(member.id, audio=member.audio_blocked, video=member.video_blocked)
    room.set_space(member.id, member.space)
    if member.presence in (Presence.LEFT, Presence.REMOVED, Presence.WAITING):
        room.spawn_leave(member.id)


def _publishes(hub: RoomHub, member: Member) -> bool:
    # A supervisor watches a group unseen, so sends nothing; in a one-on-one they are seen.
    # ...unless they take a patient to a private room, where the patient must see them.
    return (
        member.role is not RoomRole.OBSERVER
        or hub.room.observers_visible
        or member.space is not None
    )


async def handle(app: web.Application, hub: RoomHub, member_id: str, message: Any) -> None:
    """Apply one media message from a member; refusals raise ProtocolError."""
    member = hub.room.members.get(member_id)
    if member is None or not member.in_room or member.presence is not Presence.ADMITTED:
        raise protocol.ProtocolError("not_admitted", "media starts once you are in the room")
    room = media_for(app, hub)
    allowed = PERMISSIONS[member.role]
    try:
        if isinstance(message, protocol.MediaJoin):
            settings = app[SETTINGS]
            await room.join(
                member_id,
                publishes=_publishes(hub, member),
                may_share_screen=RoomAction.SHARE_SCREEN in allowed,
                receive_video=message.receive_video,
                ice_servers=turn.ice_servers(
                    settings.turn_urls,
                    settings.turn_secret,
                    app[CLOCK].now().timestamp(),
                    settings.turn_ttl_s,
                ),
            )
        elif isinstance(message, protocol.MediaAnswer):
            await room.answer(member_id, message.sdp)
        elif isinstance(message, protocol.MediaUpdate):
            if message.screen is not None:
                room.share_screen(member_id, message.screen)
            if message.receive_video is not None:
                room.set_receive_video(member_id, message.receive_video)
        elif isinstance(message, protocol.MediaLeave):
            await room.leave(member_id)
        elif isinstance(message, protocol.ScreenAllow):
            if RoomAction.ALLOW_SCREEN not in allowed:
                raise MediaError("forbidden", "only the clinicians can allow screen sharing")
            if message.member_id not in hub.room.members:
                raise MediaError("unknown_member", "no such member in this room")
            room.allow_screen(message.member_id, message.allowed)
            hub.broadcast(
                frozenset({message.member_id}) | hub.staff_ids(),
                {
                    "type": "screen_allowed",
                    "member_id": message.member_id,
                    "allowed": message.allowed,
                },
            )
    except MediaError as exc:
        raise protocol.ProtocolError(exc.code, exc.reason) from None


async def close_room(app: web.Application, room_id: str) -> None:
    """The room is gone: close its media."""
    room = app[MEDIA].pop(room_id, None)
    if room is not None:
        await room.close()


async def _media_ctx(app: web.Application) -> Any:
    hooks.use_host_addresses(app[SETTINGS].ice_hosts)
    app[MEDIA] = MediaRooms()
    yield
    rooms = list(app[MEDIA].values())
    app[MEDIA].clear()
    for room in rooms:
        await room.close()


def setup(app: web.Application) -> None:
    """Media for the live rooms, closed with the application."""
    app.cleanup_ctx.append(_media_ctx)
