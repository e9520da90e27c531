"""The room WebSocket's media messages, adapted onto rooms/media (the SFU)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from rooms import outbound
from rooms.hub import RoomHub
from rooms.media import fanout, hooks
from rooms.media.room import MediaError, MediaRoom, MediaSettings
from rooms.model import Member, Presence, RoomError
from server.appkeys import CLOCK, SETTINGS
from server.logs import get_logger
from server.roomsocket import turn

log = get_logger(__name__)


class MediaRooms(dict[str, MediaRoom]):
    """The live rooms' media, by room id."""


MEDIA = web.AppKey("media", MediaRooms)


def media_settings(app: web.Application) -> MediaSettings:
    """The codecs and bitrate caps every room's SFU negotiates, from the settings."""
    settings = app[SETTINGS]
    codecs = tuple(f"video/{'VP8' if c == 'vp8' else 'H264'}" for c in settings.video_codecs)
    return MediaSettings(
        video_codecs=codecs,
        camera_bps=settings.video_kbps * 1000,
        screen_bps=settings.screen_kbps * 1000,
    )


def ice_servers_now(app: web.Application) -> list[dict[str, Any]]:
    """Fresh short-lived TURN credentials for one browser connection (empty without TURN)."""
    settings = app[SETTINGS]
    return turn.ice_servers(
        settings.turn_urls, settings.turn_secret, app[CLOCK].now().timestamp(), settings.turn_ttl_s
    )


def media_for(app: web.Application, hub: RoomHub) -> MediaRoom:
    """The room's SFU, created with the hub's hooks on first use."""
    rooms = app[MEDIA]
    existing = rooms.get(hub.room.id)
    if existing is not None:
        return existing

    def signal(member_id: str, message: dict[str, Any]) -> None:
        hub.broadcast(frozenset({member_id}), message)

    def on_speaker(member_id: str) -> None:
        hub.broadcast(hub.in_room_ids(), outbound.speaker(member_id))

    media = MediaRoom(hub.room.id, signal, settings=media_settings(app), on_speaker=on_speaker)
    for member in hub.room.members.values():
        media.set_space(member.id, hub.room.media_space(member))
    rooms[hub.room.id] = media
    return media


def member_changed(app: web.Application, room_id: str, member: Member, space: str | None) -> None:
    """Keep media in step with the room: who may send, where they are (`space`: a private
    room, a breakout, or None for the group), and who has gone."""
    room = app[MEDIA].get(room_id)
    if room is None:
        return
    room.set_blocked(member.id, audio=member.audio_blocked, video=member.video_blocked)
    room.set_space(member.id, space)
    if member.presence in (Presence.LEFT, Presence.REMOVED, Presence.WAITING):
        room.spawn_leave(member.id)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except MediaError as exc:
        raise RoomError(exc.code, exc.reason) from None


class RoomMedia:
    """One room's `MediaPort`: its SFU, created on first use; the room checked the message."""

    def __init__(self, app: web.Application, hub: Callable[[], RoomHub]) -> None:
        self._app = app
        self._hub = hub

    def _room(self) -> MediaRoom:
        return media_for(self._app, self._hub())

    async def join(
        self, member_id: str, *, publishes: bool, may_share_screen: bool, receive_video: bool
    ) -> None:
        """Start (or replace) a member's media connection, with fresh TURN credentials."""
        ice_servers = ice_servers_now(self._app)
        with _refusals():
            await self._room().join(
                member_id,
                publishes=publishes,
                may_share_screen=may_share_screen,
                receive_video=receive_video,
                ice_servers=ice_servers,
            )

    async def answer(self, member_id: str, sdp: str) -> None:
        """The member's answer to the latest offer."""
        with _refusals():
            await self._room().answer(member_id, sdp)

    async def update(
        self, member_id: str, *, screen: bool | None, receive_video: bool | None
    ) -> None:
        """Start or stop a screen share; turn others' video off or on."""
        with _refusals():
            room = self._room()
            if screen is not None:
                room.share_screen(member_id, screen)
            if receive_video is not None:
                room.set_receive_video(member_id, receive_video)

    async def leave(self, member_id: str) -> None:
        """Stop the member's media."""
        with _refusals():
            await self._room().leave(member_id)

    async def allow_screen(self, member_id: str, allowed: bool) -> None:
        """Let a participant share their screen, or take that back."""
        with _refusals():
            self._room().allow_screen(member_id, allowed)


async def close_room(app: web.Application, room_id: str) -> None:
    """The room is gone: close its media."""
    room = app[MEDIA].pop(room_id, None)
    if room is not None:
        await room.close()


async def _media_ctx(app: web.Application) -> Any:
    hooks.use_host_addresses(app[SETTINGS].ice_hosts)
    fanout.select(app[SETTINGS].fanout)
    app[MEDIA] = MediaRooms()
    yield
    rooms = list(app[MEDIA].values())
    app[MEDIA].clear()
    for room in rooms:
        await room.close()


def setup(app: web.Application) -> None:
    """Media for the live rooms, closed with the application."""
    app.cleanup_ctx.append(_media_ctx)
