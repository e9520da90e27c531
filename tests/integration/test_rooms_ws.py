"""The room protocol over real WebSockets: admission, moderation, chat privacy, resync."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rooms.closecodes import CloseCode
from server.appkeys import ENGINE
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import attendance_events, crisis_events, crisis_steps, sessions
from tests.conftest import RunningServer, consent_group, signed_in, staff_login, start_server

TIMEOUT = 5.0


@dataclass
class Peer:
    """One WebSocket client and everything it received."""

    http: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    received: list[dict[str, Any]] = field(default_factory=list)
    me: str = ""

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def until(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first message (already received or arriving) that matches."""
        for message in self.received:
            if match(message):
                return message
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.ws.receive()
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket ended: {frame.type} {frame.data}")
                message = json.loads(frame.data)
                self.received.append(message)
                if match(message):
                    return message

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives in the next moment."""
        got: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    frame = await self.ws.receive()
                    if frame.type is not aiohttp.WSMsgType.TEXT:
                        return got
                    got.append(json.loads(frame.data))
        except TimeoutError:
            pass
        self.received.extend(got)
        return got

    async def closed(self) -> int:
        """Wait for the server to close the socket; return its close code."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.ws.receive()
                if frame.type is aiohttp.WSMsgType.CLOSE:
                    return int(frame.data)  # the code the server sent
                if frame.type is aiohttp.WSMsgType.CLOSED:
                    return int(self.ws.close_code or 0)
                self.received.append(json.loads(frame.data))


def _member(message: dict[str, Any], member_id: str, presence: str | None = None) -> bool:
    return (
        message["type"] == "member"
        and message["member"]["id"] == member_id
        and (presence is None or message["member"]["presence"] == presence)
    )


class Room:
    """A demo group's room with helpers to bring people in."""

    def __init__(self, server: RunningServer, demo: dict[str, Any]) -> None:
        self.server = server
        self.demo = demo
        self.group = demo["groups"][0]
        self.room_id = self.group["patients"][0]["join_session_id"]
        self.peers: list[Peer] = []

    async def _open(self, http: aiohttp.ClientSession, last_seq: int | None = None) -> Peer:
        ws = await http.ws_connect(f"/ws/rooms/{self.room_id}")
        peer = Peer(http, ws)
        await peer.send({"type": "hello", "protocol": 1, "last_seq": last_seq})
        self.peers.append(peer)
        first = await peer.until(lambda m: m["type"] in ("snapshot", "resync", "error"))
        if first["type"] != "error":
            peer.me = first["you"]["id"]
        return peer

    async def staff(self, role: str = "clinician", index: int = 0) -> Peer:
        http = await signed_in(self.server, *staff_login(self.demo, role, index))
        return await self._open(http)

    async def patient(self, index: int) -> Peer:
        http = self.server.client()
        landing = await http.get(self.group["patients"][index]["join_url"])
        assert landing.status == 200
        return await self._open(http)

    async def admitted(self, host: Peer, index: int) -> Peer:
        patient = await self.patient(index)
        await host.until(lambda m: _member(m, patient.me, "waiting"))
        await host.send({"type": "admit", "member_id": patient.me})
        await patient.until(
            lambda m: m["type"] == "snapshot" and m["you"]["presence"] == "admitted"
        )
        return patient

    async def close(self) -> None:
        for peer in self.peers:
            await peer.ws.close()
            await peer.http.close()


@pytest.fixture
async def room(server: RunningServer, demo: dict[str, Any]) -> AsyncIterator[Room]:
    await consent_group(server, demo)
    opened = Room(server, demo)
    try:
        yield opened
    finally:
        await opened.close()


async def test_patients_wait_until_a_host_admits_them(room: Room) -> None:
    host = await room.staff()
    patient = await room.patient(0)
    assert patient.received[0]["you"]["presence"] == "waiting"
    assert [m["id"] for m in patient.received[0]["members"]] == [patient.me]  # nobody else
    waiting = await host.until(lambda m: _member(m, patient.me, "waiting"))
    assert waiting["member"]["name"] == "Avery"
    await host.send({"type": "admit", "member_id": patient.me})
    snapshot = await patient.until(
        lambda m: m["type"] == "snapshot" and m["you"]["presence"] == "admitted"
    )
    assert {m["name"] for m in snapshot["members"]} == {"Casey Lead (demo)", "Avery"}


async def test_admit_all_and_everyone_sees_everyone(room: Room) -> None:
    host = await room.staff()
    first, second = await room.patient(0), await room.patient(1)
    await host.until(lambda m: _member(m, second.me, "waiting"))
    await host.send({"type": "admit_all"})
    for patient, other in ((first, second), (second, first)):
        await patient.until(lambda m, o=other: _member(m, o.me, "admitted"))
    assert (await host.until(lambda m: _member(m, first.me, "admitted")))["member"]


async def test_patients_cannot_moderate(room: Room) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    other = await room.patient(1)
    for message in (
        {"type": "admit", "member_id": other.me},
        {"type": "remove", "member_id": host.me},
        {"type": "lock", "locked": True},
        {"type": "end"},
        {"type": "note", "text": "x"},
    ):
        await patient.send(message)
        error = await patient.until(
            lambda m, t=message["type"]: m["type"] == "error" and m not in []
        )
        assert error["code"] == "forbidden", message
        patient.received.remove(error)


async def test_a_locked_room_refuses_newcomers(room: Room) -> None:
    host = await room.staff()
    await host.send({"type": "lock", "locked": True})
    await host.until(lambda m: m["type"] == "room" and m["locked"])
    patient = await room.patient(0)
    assert patient.received[0] == {
        "type": "error",
        "code": "locked",
        "reason": "the session is not taking new arrivals",
    }
    assert await patient.closed() == CloseCode.REFUSED


async def test_removed_patients_are_told_and_cannot_rejoin_until_readmitted(room: Room) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    await host.send({"type": "remove", "member_id": patient.me})
    assert await patient.closed() == CloseCode.REMOVED
    again = await room._open(patient.http)
    assert again.received[0]["code"] == "removed"
    await host.send({"type": "admit", "member_id": patient.me})
    await host.until(lambda m: _member(m, patient.me, "left"))
    back = await room._open(patient.http)
    assert back.received[0]["you"]["presence"] == "admitted"


async def test_mute_is_enforced_and_told_and_the_patient_may_ask_to_unmute(room: Room) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    await host.send({"type": "mute", "member_id": patient.me, "audio": True})
    told = await patient.until(lambda m: _member(m, patient.me) and m["member"]["audio_blocked"])
    assert told["member"]["video_blocked"] is False
    assert room.server.app  # the room state is server-held: the SFU stops forwarding on it
    await patient.send({"type": "ask_unmute"})
    await host.until(lambda m: _member(m, patient.me) and m["member"]["unmute_requested"])
    await host.send({"type": "mute", "member_id": patient.me, "audio": False})
    await patient.until(
        lambda m: (
            _member(m, patient.me)
            and not m["member"]["audio_blocked"]
            and not m["member"]["unmute_requested"]
        )
    )


async def test_hands_and_reactions(room: Room) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    await patient.send({"type": "raise_hand", "raised": True})
    await host.until(lambda m: _member(m, patient.me) and m["member"]["hand_raised"])
    await host.send({"type": "lower_hand", "member_id": patient.me})
    await patient.until(lambda m: _member(m, patient.me) and not m["member"]["hand_raised"])
    await patient.send({"type": "react", "reaction": "need_a_moment"})
    reaction = await host.until(lambda m: m["type"] == "reaction")
    assert reaction == {**reaction, "from": patient.me, "reaction": "need_a_moment"}


async def test_private_messages_and_staff_notes_never_reach_other_patients(room: Room) -> None:
    host = await room.staff()
    observer = await room.staff("supervisor")
    alice = await room.admitted(host, 0)
    bob = await room.admitted(host, 1)
    await alice.send({"type": "chat", "to": "staff", "text": "private from alice"})
    await host.send({"type": "chat", "to": alice.me, "text": "private reply to alice"})
    await host.send({"type": "note", "about": alice.me, "text": "staff note about alice"})
    await alice.send({"type": "chat", "to": "room", "text": "hello everyone"})
    await bob.until(lambda m: m["type"] == "chat" and m["text"] == "hello everyone")
    await observer.until(lambda m: m["type"] == "chat" and m["text"] == "staff note about alice")
    await alice.until(lambda m: m["type"] == "chat" and m["text"] == "private reply to alice")
    await bob.quiet()
    bob_texts = [m.get("text") for m in bob.received if m["type"] == "chat"]
    assert bob_texts == ["hello everyone"]
    alice_texts = {m.get("text") for m in alice.received if m["type"] == "chat"}
    assert "staff note about alice" not in alice_texts
    assert {"private from alice", "private reply to alice"} <= alice_texts
    await bob.send({"type": "chat", "to": alice.me, "text": "psst"})
    assert (await bob.until(lambda m: m["type"] == "error"))["code"] == "forbidden"
    # A newly admitted patient's snapshot carries none of it.
    carol = await room.admitted(host, 2)
    snapshot = next(m for m in reversed(carol.received) if m["type"] == "snapshot")
    assert snapshot["chat"] == []


async def test_a_dropped_socket_resyncs_with_exactly_the_missed_messages(room: Room) -> None:
    host = await room.staff()
    alice = await room.admitted(host, 0)
    bob = await room.admitted(host, 1)
    await bob.quiet()
    last = max(m["seq"] for m in bob.received if "seq" in m)
    await bob.ws.close()
    await host.until(lambda m: _member(m, bob.me, "reconnecting"))
    await alice.send({"type": "chat", "to": "room", "text": "while bob was away"})
    await host.send({"type": "chat", "to": alice.me, "text": "private to alice"})
    await host.send({"type": "note", "text": "note while away"})
    await host.until(lambda m: m.get("text") == "note while away")
    back = await room._open(bob.http, last_seq=last)
    await back.quiet()
    types = [m["type"] for m in back.received]
    assert "snapshot" not in types
    texts = [m.get("text") for m in back.received if m["type"] == "chat"]
    assert texts == ["while bob was away"]
    seqs = [m["seq"] for m in back.received if "seq" in m]
    assert seqs == sorted(seqs) and seqs[0] > last
    await host.until(lambda m: _member(m, bob.me, "admitted") and m["seq"] > last)


async def test_a_resync_from_too_far_back_gets_a_snapshot(room: Room) -> None:
    host = await room.staff()
    await host.ws.close()
    again = await room._open(host.http, last_seq=10_000)
    assert again.received[0]["type"] == "snapshot"


async def test_one_patient_one_room_and_one_device(room: Room) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    second_device = room.server.client()
    await second_device.get(room.group["patients"][0]["join_url"])
    replacement = await room._open(second_device)
    assert replacement.received[0]["you"]["presence"] == "admitted"
    assert await patient.closed() == CloseCode.REPLACED


async def test_only_this_sessions_people_may_connect(room: Room) -> None:
    async with await signed_in(room.server, *staff_login(room.demo, "admin")) as admin:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await admin.ws_connect(f"/ws/rooms/{room.room_id}")
        assert refused.value.status == 403
    async with room.server.client() as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError) as unknown:
            await anonymous.ws_connect(f"/ws/rooms/{room.room_id}")
        assert unknown.value.status == 401


async def test_the_first_message_must_be_hello_in_this_protocol_version(room: Room) -> None:
    http = await signed_in(room.server, *staff_login(room.demo, "clinician"))
    ws = await http.ws_connect(f"/ws/rooms/{room.room_id}")
    await ws.send_json({"type": "hello", "protocol": 99})
    error = await ws.receive_json()
    assert error["code"] == "protocol_version"
    await ws.receive()
    assert ws.close_code == CloseCode.PROTOCOL
    await http.close()


async def test_host_ends_the_session_for_everyone(room: Room) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    await host.send({"type": "end"})
    assert await patient.closed() == CloseCode.ENDED
    assert await host.closed() == CloseCode.ENDED


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    frames=st.lists(
        st.one_of(
            st.text(max_size=200),
            st.dictionaries(
                st.sampled_from(["type", "to", "text", "member_id", "raised", "locked", "t"]),
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.integers(),
                    st.text(max_size=30),
                    st.sampled_from(["chat", "admit", "mute", "lock", "hello", "ping", "end"]),
                ),
                max_size=4,
            ).map(json.dumps),
        ),
        min_size=1,
        max_size=8,
    )
)
async def test_malformed_messages_get_errors_and_the_room_keeps_serving(
    fuzz_room: Room, frames: list[str]
) -> None:
    host = fuzz_room.peers[0]
    # A fresh connection per example: the flood limit is a test of its own.
    patient = await fuzz_room._open(fuzz_room.peers[1].http)
    for frame in frames:
        await patient.ws.send_str(frame)
    await patient.send({"type": "ping", "t": 1.0})
    # (A generated frame may be a valid ping of its own, answered first.)
    replies = await patient.until(lambda m: m["type"] == "pong" and m.get("t") == 1.0)
    assert replies["t"] == 1.0
    errors = [m for m in patient.received if m["type"] == "error"]
    assert all(set(m) == {"type", "code", "reason"} for m in errors)
    await host.send({"type": "ping", "t": 2.0})
    assert (await host.until(lambda m: m["type"] == "pong" and m["t"] == 2.0))["t"] == 2.0
    host.received.clear()
    await patient.ws.close()


@pytest.fixture
async def fuzz_room(room: Room) -> Room:
    host = await room.staff()
    await room.admitted(host, 0)
    return room


async def test_a_flood_of_bad_messages_closes_only_that_connection(room: Room) -> None:
    host = await room.staff()
    patient = await room.admitted(host, 0)
    for _ in range(30):
        await patient.ws.send_str("{nonsense")
    assert await patient.closed() == CloseCode.FLOOD
    await host.send({"type": "ping", "t": 3.0})
    assert (await host.until(lambda m: m["type"] == "pong"))["t"] == 3.0


async def test_joins_and_leaves_are_recorded_with_reconnect_grace(
    tmp_path: Path, sqlite_url: str
) -> None:
    server = await start_server(tmp_path / "d", sqlite_url, {"IOP_RECONNECT_GRACE_SECONDS": "1"})
    try:
        demo = await server.seed_demo()
        await consent_group(server, demo)
        opened = Room(server, demo)
        try:
            host = await opened.staff()
            patient = await opened.admitted(host, 0)
            await patient.ws.close()
            await host.until(lambda m: _member(m, patient.me, "reconnecting"))
            await host.until(lambda m: _member(m, patient.me, "left"))
        finally:
            await opened.close()
        await server.app[ROOM_JOURNAL].flush()
        async with server.app[ENGINE].connect() as conn:
            rows = await conn.execute(
                sa.select(attendance_events.c.event)
                .where(attendance_events.c.person_type == "patient")
                .order_by(attendance_events.c.id)
            )
            events = [row.event for row in rows]
        assert events == ["waiting", "admitted", "disconnected", "left"]
    finally:
        await server.runner.cleanup()


async def test_shutdown_closes_open_sockets(tmp_path: Path, sqlite_url: str) -> None:
    server = await start_server(tmp_path / "d", sqlite_url)
    demo = await server.seed_demo()
    opened = Room(server, demo)
    try:
        host = await opened.staff()
        await server.runner.cleanup()
        assert await host.closed() == CloseCode.SHUTDOWN
    finally:
        await opened.close()


async def test_start_and_end_are_kept_on_the_session_and_an_ended_room_stays_shut(
    room: Room,
) -> None:
    host = await room.staff()
    await host.send({"type": "start"})
    await host.until(lambda m: m["type"] == "room" and m["state"] == "live")
    await host.send({"type": "end"})
    assert await host.closed() == CloseCode.ENDED
    await room.server.app[ROOM_JOURNAL].flush()
    async with room.server.app[ENGINE].connect() as conn:
        state = await conn.scalar(sa.select(sessions.c.state).where(sessions.c.id == room.room_id))
    assert state == "ended"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await host.http.ws_connect(f"/ws/rooms/{room.room_id}")
    assert refused.value.status == 410


async def test_a_supervisor_observes_a_group_unseen_by_patients(room: Room) -> None:
    host = await room.staff()
    observer = await room.staff("supervisor")
    patient = await room.admitted(host, 0)
    snapshot = next(m for m in reversed(patient.received) if m["type"] == "snapshot")
    roles = {m["role"] for m in snapshot["members"]}
    assert roles == {"host", "participant"}
    await host.until(lambda m: _member(m, observer.me, "admitted") or m["type"] == "snapshot")
    await observer.send({"type": "chat", "to": patient.me, "text": "hello"})
    assert (await observer.until(lambda m: m["type"] == "error"))["code"] == "forbidden"


async def test_the_help_button_reaches_only_staff_and_opens_an_escalation(room: Room) -> None:
    host = await room.staff()
    observer = await room.staff("supervisor")
    alice = await room.admitted(host, 0)
    bob = await room.admitted(host, 1)
    await alice.send({"type": "help", "text": "I am not safe right now"})
    for staff_member in (host, observer):
        alert = await staff_member.until(lambda m: m["type"] == "help")
        assert alert["from"] == alice.me and alert["text"] == "I am not safe right now"
    assert (await alice.until(lambda m: m["type"] == "help_received"))["at"]
    await bob.quiet()
    assert not [m for m in bob.received if m["type"] in ("help", "help_received")]
    await host.send({"type": "help", "text": "x"})
    assert (await host.until(lambda m: m["type"] == "error"))["code"] == "forbidden"
    # Pressed again: the same incident, so the open event gets a step, not a twin.
    await alice.send({"type": "help", "text": ""})
    await host.until(lambda m: m["type"] == "help" and m["text"] == "")
    await room.server.app[ROOM_JOURNAL].flush()
    async with room.server.app[ENGINE].connect() as conn:
        rows = (
            await conn.execute(
                sa.select(crisis_events.c.id, crisis_events.c.trigger, crisis_events.c.level).where(
                    crisis_events.c.patient_id == alice.me.split(":", 1)[1]
                )
            )
        ).all()
        assert [(r.trigger, r.level) for r in rows] == [("help_button", "high")]
        kinds = (
            (
                await conn.execute(
                    sa.select(crisis_steps.c.kind)
                    .where(crisis_steps.c.event_id == rows[0].id)
                    .order_by(crisis_steps.c.step_no)
                )
            )
            .scalars()
            .all()
        )
    assert kinds[0] == "raised" and kinds.count("concern_added") == 1


async def test_the_patient_is_told_help_is_on_its_way_only_once_the_event_is_stored(
    room: Room,
) -> None:
    """A node that stopped between the press and the commit must not have told the patient
    "your clinician has been told": she keeps the press and sends it again on reconnect."""
    host = await room.staff()
    alice = await room.admitted(host, 0)
    await alice.send({"type": "help", "text": "", "press_id": "not valid!"})
    assert (await alice.until(lambda m: m["type"] == "error"))["code"] == "invalid"
    await alice.send({"type": "help", "text": "", "press_id": "press-1"})
    confirmed = await alice.until(lambda m: m["type"] == "help_received")
    assert confirmed["press_id"] == "press-1"
    # When the confirmation arrives the event is already committed: no flush needed.
    async with room.server.app[ENGINE].connect() as conn:
        stored = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(crisis_events)
            .where(crisis_events.c.patient_id == alice.me.split(":", 1)[1])
        )
    assert stored == 1


async def test_a_waiting_patient_can_ask_for_help_too(room: Room) -> None:
    host = await room.staff()
    waiting = await room.patient(0)
    await waiting.send({"type": "help", "text": ""})
    assert (await host.until(lambda m: m["type"] == "help"))["from"] == waiting.me
    await waiting.until(lambda m: m["type"] == "help_received")


async def test_revoking_a_join_link_closes_the_socket_it_opened(room: Room) -> None:
    host = await room.staff()
    patient = room.group["patients"][2]
    issued = await host.http.post(
        f"/api/patients/{patient['id']}/join-links", json={"standing": True}
    )
    assert issued.status == 201
    link = await issued.json()
    http = room.server.client()
    assert (await http.get(link["url"])).status == 200
    phone = await room._open(http)
    await host.until(lambda m: _member(m, phone.me, "waiting"))
    revoked = await host.http.delete(f"/api/join-links/{link['id']}")
    assert revoked.status == 200
    assert await phone.closed() == CloseCode.LINK_REVOKED
    assert phone.ws.close_code == CloseCode.LINK_REVOKED
    # The room sees them go, and the link opens nothing any more.
    await host.until(lambda m: _member(m, phone.me, "left"))
    refused = await http.get(f"/ws/rooms/{room.room_id}")
    assert refused.status == 401
