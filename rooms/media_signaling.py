"""Media messages as the room allows them: who may send what, then the media port.

Media starts once a member is admitted (a waiting patient sends and receives nothing);
what they may publish follows their role and where they are.
"""

from __future__ import annotations

from rooms import outbound
from rooms import protocol as p
from rooms.events import MediaPort
from rooms.live import LiveRoom
from rooms.model import PERMISSIONS, Member, Presence, RoomAction, RoomError, RoomRole


class MediaSignaling:
    """Checks each media message against the room, then hands it to the port."""

    def __init__(self, live: LiveRoom, port: MediaPort) -> None:
        self._live = live
        self._port = port

    def _admitted(self, member: Member, action: RoomAction) -> None:
        if not member.in_room or member.presence is not Presence.ADMITTED:
            raise RoomError("not_admitted", "media starts once you are in the room")
        self._live.room.check(member, action)

    def _publishes(self, member: Member) -> bool:
        # A supervisor watches a group unseen, so sends nothing; in a one-on-one they are
        # seen. ...unless they take a patient to a private room, where the patient must
        # see them.
        return (
            member.role is not RoomRole.OBSERVER
            or self._live.room.observers_visible
            or member.space is not None
        )

    async def on_join(self, member: Member, message: p.MediaJoin) -> None:
        """Start (or replace) the member's media connection."""
        self._admitted(member, RoomAction.MEDIA)
        await self._port.join(
            member.id,
            publishes=self._publishes(member),
            may_share_screen=RoomAction.SHARE_SCREEN in PERMISSIONS[member.role],
            receive_video=message.receive_video,
        )

    async def on_answer(self, member: Member, message: p.MediaAnswer) -> None:
        """The member's answer to the latest offer."""
        self._admitted(member, RoomAction.MEDIA)
        await self._port.answer(member.id, message.sdp)

    async def on_update(self, member: Member, message: p.MediaUpdate) -> None:
        """Start or stop a screen share; audio-only mode on or off."""
        self._admitted(member, RoomAction.MEDIA)
        await self._port.update(
            member.id, screen=message.screen, receive_video=message.receive_video
        )

    async def on_leave(self, member: Member, _message: p.MediaLeave) -> None:
        """Stop the member's media; they stay in the room."""
        self._admitted(member, RoomAction.MEDIA)
        await self._port.leave(member.id)

    async def on_screen_allow(self, member: Member, message: p.ScreenAllow) -> None:
        """A clinician lets a participant share their screen, or takes it back."""
        self._admitted(member, RoomAction.ALLOW_SCREEN)
        room = self._live.room
        if message.member_id not in room.members:
            raise RoomError("unknown_member", "no such member in this room")
        await self._port.allow_screen(message.member_id, message.allowed)
        self._live.connections.broadcast(
            frozenset({message.member_id}) | room.staff_ids(),
            outbound.screen_allowed(message.member_id, message.allowed),
        )
