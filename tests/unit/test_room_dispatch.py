"""One message path: media and drop-step messages pass the room's permission table first."""

import datetime as dt
from typing import Any

import pytest

from rooms import protocol as p
from rooms.events import QuietEvents
from rooms.hub import RoomHub
from rooms.model import PERMISSIONS, Identity, Member, Room, RoomAction, RoomRole

T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)


class Socket:
    """A connection that keeps what the room sent it."""

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> bool:
        self.sent.append(message)
        return True

    async def close(self, code: int, reason: str) -> None:
        pass


class Sfu:
    """The media port as the SFU would take it: records what the room let through."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def join(
        self, member_id: str, *, publishes: bool, may_share_screen: bool, receive_video: bool
    ) -> None:
        self.calls.append(("join", (member_id, publishes, may_share_screen)))

    async def answer(self, member_id: str, sdp: str) -> None:
        self.calls.append(("answer", member_id))

    async def update(
        self, member_id: str, *, screen: bool | None, receive_video: bool | None
    ) -> None:
        self.calls.append(("update", member_id))

    async def leave(self, member_id: str) -> None:
        self.calls.append(("leave", member_id))

    async def allow_screen(self, member_id: str, allowed: bool) -> None:
        self.calls.append(("allow_screen", (member_id, allowed)))


class Timeline:
    """The drop-step port: records the steps the room let through."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []

    async def record(self, member: Member, message: p.DropStep) -> None:
        self.steps.append((member.id, message.action))


def _room() -> tuple[RoomHub, Sfu, Timeline]:
    sfu, timeline = Sfu(), Timeline()
    hub = RoomHub(
        Room("r1", "Evening", "group", T0),
        clock=lambda: T0,
        events=QuietEvents(),
        media=sfu,
        drops=timeline,
    )
    return hub, sfu, timeline


def _join(hub: RoomHub, kind: str, id_: str, role: RoomRole) -> Socket:
    socket = Socket(f"{kind}:{id_}")
    hub.connect(socket, Identity(kind, id_), role, id_.title(), None)
    return socket


DROP_STEP = p.DropStep(type="drop_step", event_id="event-0001", action="call_back", outcome="taken")


def test_table_lets_only_host_and_cohost_allow_screens_and_log_drop_steps() -> None:
    for role in RoomRole:
        facilitator = role in (RoomRole.HOST, RoomRole.COHOST)
        assert (RoomAction.ALLOW_SCREEN in PERMISSIONS[role]) is facilitator
        assert (RoomAction.LOG_DROP_STEP in PERMISSIONS[role]) is facilitator
        assert RoomAction.MEDIA in PERMISSIONS[role]


async def test_a_patients_screen_allow_is_refused_by_the_table_before_media() -> None:
    hub, sfu, _ = _room()
    _join(hub, "staff", "h", RoomRole.HOST)
    patient = _join(hub, "patient", "p", RoomRole.PARTICIPANT)
    hub.room.admit_all(hub.room.members["staff:h"], T0)
    message = p.ScreenAllow(type="screen_allow", member_id="patient:p", allowed=True)
    with pytest.raises(p.ProtocolError) as refused:
        await hub.dispatch(patient, message)
    assert (refused.value.code, refused.value.reason) == (
        "forbidden",
        "only the clinicians can allow screen sharing",
    )
    assert sfu.calls == []


async def test_a_patients_drop_step_is_refused_by_the_table() -> None:
    hub, _, timeline = _room()
    host = _join(hub, "staff", "h", RoomRole.HOST)
    patient = _join(hub, "patient", "p", RoomRole.PARTICIPANT)
    hub.room.admit_all(hub.room.members["staff:h"], T0)
    with pytest.raises(p.ProtocolError) as refused:
        await hub.dispatch(patient, DROP_STEP)
    assert (refused.value.code, refused.value.reason) == (
        "forbidden",
        "only the host and co-host log these steps",
    )
    assert timeline.steps == []
    await hub.dispatch(host, DROP_STEP)
    assert timeline.steps == [("staff:h", "call_back")]


async def test_media_waits_for_admission_and_a_host_may_allow_a_screen() -> None:
    hub, sfu, _ = _room()
    host = _join(hub, "staff", "h", RoomRole.HOST)
    patient = _join(hub, "patient", "p", RoomRole.PARTICIPANT)
    with pytest.raises(p.ProtocolError) as waiting:
        await hub.dispatch(patient, p.MediaJoin(type="media_join"))
    assert waiting.value.code == "not_admitted"
    hub.room.admit_all(hub.room.members["staff:h"], T0)
    await hub.dispatch(patient, p.MediaJoin(type="media_join"))
    await hub.dispatch(
        host, p.ScreenAllow(type="screen_allow", member_id="patient:p", allowed=True)
    )
    assert sfu.calls == [
        ("join", ("patient:p", True, False)),
        ("allow_screen", ("patient:p", True)),
    ]
    notice = {"type": "screen_allowed", "member_id": "patient:p", "allowed": True}
    assert notice in patient.sent and notice in host.sent
