"""A live room's hub, built with what it reports to: the journal, audit, crisis path, media."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from crisis.escalation import Concern
from rooms import protocol
from rooms.clock import SessionClock
from rooms.events import MemberEvent, Stored
from rooms.hub import RoomHub
from rooms.model import Member, Room, RoomState
from rooms.ratelimit import Limits, Rate
from server import audit
from server.appkeys import CLOCK, ENGINE, ROOMS, SETTINGS
from server.crisis import dropwatch, oncall
from server.handouts import store as handout_store
from server.logs import get_logger
from server.roomsocket import media, placement
from server.roomsocket.access import Entry
from server.roomsocket.journal import ROOM_JOURNAL
from server.storage.tables import sessions
from server.structure.store import load_clock

log = get_logger(__name__)
AUDITED_CLOCK_OPS = frozenset({"start", "end", "hand_off"})


class _HubRef:
    """The hub its own ports and events need, known once it is built."""

    def __init__(self) -> None:
        self.hub: RoomHub | None = None

    def __call__(self) -> RoomHub:
        if self.hub is None:
            raise RuntimeError("the room's hub is not built yet")
        return self.hub


class RoomSocketEvents:
    """A room's `RoomEvents`: attendance, session state and clock to the journal (and the
    audit log), help presses and private rooms to the crisis path, members to media."""

    def __init__(self, app: web.Application, room_id: str, hub: _HubRef) -> None:
        self._app = app
        self._room_id = room_id
        self._hub = hub
        self._journal = app[ROOM_JOURNAL]

    def presence(self, member: Member, event: MemberEvent, at: dt.datetime) -> None:
        """An attendance event."""
        self._journal.record(self._room_id, member, event.value, at)

    def member_changed(self, member: Member) -> None:
        """Media follows who may send; a flagged patient's drop prompts the facilitators."""
        hub = self._hub.hub
        space = member.space if hub is None else hub.room.media_space(member)
        media.member_changed(self._app, self._room_id, member, space)
        if hub is not None:
            self._app[dropwatch.DROPS].member_changed(hub, member)

    def room_saved(self, persisted: dict[str, Any]) -> None:
        """Membership, for the node that takes the room over."""
        self._journal.room_state(self._room_id, persisted)

    def state_changed(self, state: RoomState) -> None:
        """The session went live or ended."""
        self._journal.session_state(self._room_id, state.value)

    def clock_changed(self, clock: SessionClock, op: str, member: Member | None) -> None:
        """Store the clock (starting, ending and handing it off are audited)."""
        audit_row = None
        if op in AUDITED_CLOCK_OPS:
            audit_row = self._audit_row(
                f"clock.{op}",
                member,
                "session",
                self._room_id,
                {"held_by": clock.held_by, "status": clock.status.value},
            )
        self._journal.clock(self._room_id, clock.to_json(), audit_row)
        placement.phase_changed(self._app, self._room_id, op)

    def help_pressed(
        self, member: Member, text: str, at: dt.datetime, stored: Stored, *, repeat: int = 0
    ) -> None:
        """Raise the press as a high-level concern through the crisis entry point."""
        detail: dict[str, Any] = {"message": text} if text else {}
        if repeat:
            detail["presses"] = repeat
        self._journal.concern(
            Concern(
                patient_id=member.identity.id,
                session_id=self._room_id,
                trigger="help_button",
                level="high",
                rule="the patient pressed I need help again"
                if repeat
                else "the patient pressed I need help",
                at=at,
                detail=detail,
            ),
            stored,
            fold=bool(repeat),
        )
        if repeat:
            log.info("crisis.help_folded", room_id=self._room_id, count=repeat)
        else:
            log.warning("crisis.help_pressed", room_id=self._room_id)

    def private_room_opened(self, patient: Member, clinician: Member, at: dt.datetime) -> None:
        """Recorded on the patient's open crisis event."""
        self._journal.private_room(self._room_id, patient.identity.id, clinician.identity.id, at)
        log.warning("crisis.private_room_opened", room_id=self._room_id)

    def breakouts_changed(
        self, op: str, member: Member | None, target: str | None, detail: dict[str, Any]
    ) -> None:
        """Who split the group, moved whom, visited where and recalled: to the audit trail."""
        self._journal.audit(
            self._audit_row(
                f"breakouts.{op}",
                member,
                "patient" if target is not None else "session",
                target if target is not None else self._room_id,
                {"session_id": self._room_id, **detail},
            )
        )

    def _audit_row(
        self,
        action: str,
        member: Member | None,
        target_type: str,
        target_id: str,
        detail: dict[str, Any],
    ) -> dict[str, Any]:
        """`audit.record`'s arguments for what `member` (None: the room itself) did."""
        actor = (
            audit.Actor(member.identity.kind, member.identity.id, member.role.value)
            if member is not None
            else audit.SYSTEM
        )
        return {
            "actor": actor,
            "action": action,
            "now": self._app[CLOCK].now(),
            "target_type": target_type,
            "target_id": target_id,
            "detail": detail,
        }


class _DropSteps:
    """A room's `DropSteps`: the dropped-connection prompts' timeline steps."""

    def __init__(self, app: web.Application, hub: _HubRef) -> None:
        self._app = app
        self._hub = hub

    async def record(self, member: Member, message: protocol.DropStep) -> None:
        """Log the step on the crisis event's timeline."""
        await self._app[dropwatch.DROPS].record(self._hub(), member, message)


async def hub_for(request: web.Request, entry: Entry) -> RoomHub:
    """The room's live hub on this node, built (or taken over) on first use."""
    existing = request.app[ROOMS].get(entry.room.id)
    if existing is not None:
        return existing
    app = request.app
    clock = app[CLOCK]
    room_id = entry.room.id
    async with app[ENGINE].connect() as conn:
        clock_state = await load_clock(conn, room_id)
        floats = await oncall.float_roster(conn, room_id, clock.now())
        shelf = await handout_store.shelf_for_session(conn, room_id)
        saved_room = await conn.scalar(
            sa.select(sessions.c.room_state).where(sessions.c.id == room_id)
        )
    settings = app[SETTINGS]
    limits = Limits(
        help=Rate(settings.ws_help_burst, settings.ws_help_per_minute),
        chat=Rate(settings.ws_chat_burst, settings.ws_chat_per_minute),
        react=Rate(settings.ws_react_burst, settings.ws_react_per_minute),
    )

    def make() -> RoomHub:
        info = entry.room
        # A supervisor may watch a group unseen; a one-on-one (or family session) is never
        # observed silently.
        room = Room(
            info.id,
            info.title,
            info.kind,
            info.starts_at,
            observers_visible=info.kind != "group",
        )
        ref = _HubRef()
        hub = RoomHub(
            room,
            clock=clock.now,
            events=RoomSocketEvents(app, room_id, ref),
            media=media.RoomMedia(app, ref),
            drops=_DropSteps(app, ref),
            clock_state=clock_state,
            float_roster=floats,
            grace_s=settings.reconnect_grace_s,
            limits=limits,
            chat_kept=settings.room_chat_kept,
            handouts=shelf,
        )
        ref.hub = hub
        if saved_room and hub.room.state is not RoomState.ENDED:
            # This process takes over a room another ran (it moved, or its node died).
            hub.restore(saved_room)
        return hub

    return app[ROOMS].get_or_create(room_id, make)
