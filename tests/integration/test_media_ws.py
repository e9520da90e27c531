"""Media through the real server: aiortc peers signalling over the room WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from rooms.media import hooks
from server.appkeys import ENGINE
from server.roomsocket.media import MEDIA
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import crisis_events, crisis_steps
from tests.conftest import RunningServer, consent_group, signed_in, staff_login
from tests.media.peer import ClientPeer


class MediaMember:
    """A room WebSocket plus an aiortc peer that answers the server's offers."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.me = ""
        self.peer = ClientPeer("x")
        self.messages: list[dict[str, Any]] = []
        self.offers: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                return
            message = json.loads(frame.data)
            self.messages.append(message)
            if message["type"] == "media_offer":
                self.offers.append(message)
                sdp = await self.peer.on_offer(message)
                if self.ws.closed:
                    return
                with contextlib.suppress(aiohttp.ClientConnectionResetError):
                    await self.ws.send_json({"type": "media_answer", "sdp": sdp})

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.peer.close()
        await self.http.close()


async def until(check: Callable[[], bool], within: float = 30.0, say: Any = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not in time: {say() if callable(say) else say}")
        await asyncio.sleep(0.1)


class MediaRoomClient:
    def __init__(self, server: RunningServer, demo: dict[str, Any]) -> None:
        self.server = server
        self.demo = demo
        self.group = demo["groups"][0]
        self.room_id = self.group["patients"][0]["join_session_id"]
        self.members: list[MediaMember] = []

    async def _open(self, http: aiohttp.ClientSession) -> MediaMember:
        ws = await http.ws_connect(f"/ws/rooms/{self.room_id}")
        member = MediaMember(http, ws)
        await ws.send_json({"type": "hello", "protocol": 1, "last_seq": None})
        first = json.loads((await ws.receive()).data)
        member.me = first["you"]["id"]
        member.messages.append(first)
        member.start()
        self.members.append(member)
        return member

    async def host(self) -> MediaMember:
        return await self._open(await signed_in(self.server, *staff_login(self.demo, "clinician")))

    async def patient(self, host: MediaMember, index: int) -> MediaMember:
        http = self.server.client()
        assert (await http.get(self.group["patients"][index]["join_url"])).status == 200
        patient = await self._open(http)
        await until(lambda: any(m.get("member", {}).get("id") == patient.me for m in host.messages))
        await host.send({"type": "admit", "member_id": patient.me})
        await until(
            lambda: any(
                m["type"] == "snapshot" and m["you"]["presence"] == "admitted"
                for m in patient.messages
            )
        )
        return patient

    async def close(self) -> None:
        for member in self.members:
            await member.close()


@pytest.fixture
async def media_room(server: RunningServer, demo: dict[str, Any]) -> AsyncIterator[MediaRoomClient]:
    await consent_group(server, demo)
    client = MediaRoomClient(server, demo)
    try:
        yield client
    finally:
        await client.close()


def sees(viewer: MediaMember, other: MediaMember, source: str, frames: int = 5) -> bool:
    return viewer.peer.frames[(other.me, source)] >= frames


async def test_everyone_receives_everyone_and_the_server_only_forwards(
    media_room: MediaRoomClient, server: RunningServer
) -> None:
    host = await media_room.host()
    ana = await media_room.patient(host, 0)
    ben = await media_room.patient(host, 1)
    people = [host, ana, ben]
    for person in people:
        await person.send({"type": "media_join"})

    def all_flowing() -> bool:
        return all(
            sees(a, b, s) for a in people for b in people if a is not b for s in ("audio", "video")
        )

    await until(all_flowing, say=lambda: [dict(p.peer.frames) for p in people])
    room = server.app[MEDIA][media_room.room_id]
    assert room.forwarder.forwarded > 0
    # Forwarded packets only: no aiortc decoder, encoder or RTCP task on any server peer.
    assert all(hooks.pipeline_idle(peer.pc) for peer in room.peers.values())

    # A joiner appears for everyone, nobody else's media stops.
    cy = await media_room.patient(host, 2)
    await cy.send({"type": "media_join"})
    people.append(cy)

    def legs() -> Any:
        peer = room.peers[cy.me]
        return (
            [
                (
                    k[1],
                    leg.negotiated,
                    leg.wanted,
                    leg.packets,
                    leg.mid,
                    t.direction,
                    t.currentDirection,
                )
                for k, (leg, t) in peer.legs.items()
            ],
            cy.peer.tracks,
            [(t.mid, t.currentDirection, t.kind) for t in cy.peer.pc.getTransceivers()],
        )

    await until(all_flowing, say=legs)

    # A removed patient's tracks leave everyone's next offer.
    await host.send({"type": "remove", "member_id": ben.me})
    for person in (host, ana, cy):
        await until(
            lambda p=person: (
                bool(p.offers)
                and all(t["member_id"] != ben.me for t in p.offers[-1]["tracks"].values())
            ),
            say="ben still offered",
        )


async def test_a_host_mute_stops_forwarding_on_the_server(
    media_room: MediaRoomClient, server: RunningServer
) -> None:
    host = await media_room.host()
    ana = await media_room.patient(host, 0)
    for person in (host, ana):
        await person.send({"type": "media_join"})
    await until(lambda: sees(host, ana, "audio") and sees(host, ana, "video"))
    room = server.app[MEDIA][media_room.room_id]
    await host.send({"type": "mute", "member_id": ana.me, "audio": True})
    legs = [leg for leg in room.forwarder.legs.values() if leg.owner == ana.me]
    audio_leg = next(leg for leg in legs if leg.source == "audio")
    await asyncio.sleep(0.3)
    before = audio_leg.packets
    await asyncio.sleep(1.0)
    assert audio_leg.packets == before  # nothing forwarded while muted
    video_leg = next(leg for leg in legs if leg.source == "video")
    assert video_leg.packets > 0
    await host.send({"type": "mute", "member_id": ana.me, "audio": False})
    await until(lambda: audio_leg.packets > before + 10)


async def test_media_is_refused_in_the_waiting_room_and_bad_answers_get_errors(
    media_room: MediaRoomClient,
) -> None:
    host = await media_room.host()
    http = media_room.server.client()
    assert (await http.get(media_room.group["patients"][3]["join_url"])).status == 200
    waiting = await media_room._open(http)
    await waiting.send({"type": "media_join"})
    await until(lambda: any(m.get("code") == "not_admitted" for m in waiting.messages))
    await host.send({"type": "media_answer", "sdp": "v=0 nonsense sdp"})
    await until(lambda: any(m.get("code") == "unexpected" for m in host.messages))
    await host.send({"type": "screen_allow", "member_id": "patient:nobody", "allowed": True})
    await until(lambda: any(m.get("code") == "unknown_member" for m in host.messages))


async def test_a_network_change_replaces_only_that_members_connection(
    media_room: MediaRoomClient, server: RunningServer
) -> None:
    host = await media_room.host()
    ana = await media_room.patient(host, 0)
    ben = await media_room.patient(host, 1)
    people = [host, ana, ben]
    for person in people:
        await person.send({"type": "media_join"})
    await until(lambda: all(sees(a, b, "video") for a in people for b in people if a is not b))
    settled = {id(p): len(p.offers) for p in (host, ben)}
    await asyncio.sleep(1.0)
    settled = {id(p): len(p.offers) for p in (host, ben)}
    # Ana's network changed: her client starts over with a fresh peer connection.
    await ana.peer.close()
    ana.peer = ClientPeer("ana-again")
    await ana.send({"type": "media_join", "restart": True})
    await until(lambda: sees(ana, host, "video") and sees(ana, ben, "video"))
    before = {id(p): p.peer.frames[(ana.me, "video")] for p in (host, ben)}
    await until(
        lambda: all(p.peer.frames[(ana.me, "video")] > before[id(p)] + 10 for p in (host, ben))
    )
    # Nobody else renegotiated: their streams from Ana re-based onto her new connection.
    assert {id(p): len(p.offers) for p in (host, ben)} == settled


async def test_the_active_speaker_is_announced_from_audio_levels(
    media_room: MediaRoomClient,
) -> None:
    host = await media_room.host()
    ana = await media_room.patient(host, 0)
    ana.peer = ClientPeer("ana", loud=True)
    for person in (host, ana):
        await person.send({"type": "media_join"})
    await until(
        lambda: any(m["type"] == "speaker" and m["member_id"] == ana.me for m in host.messages)
    )


async def test_audio_only_stops_video_to_that_member_and_can_be_undone(
    media_room: MediaRoomClient, server: RunningServer
) -> None:
    host = await media_room.host()
    ana = await media_room.patient(host, 0)
    for person in (host, ana):
        await person.send({"type": "media_join"})
    await until(lambda: sees(ana, host, "video") and sees(ana, host, "audio"))
    room = server.app[MEDIA][media_room.room_id]
    to_ana = {leg.source: leg for leg in room.forwarder.legs.values() if leg.subscriber == ana.me}
    await ana.send({"type": "media_update", "receive_video": False})
    await asyncio.sleep(0.5)
    video_before, audio_before = to_ana["video"].packets, to_ana["audio"].packets
    await asyncio.sleep(1.0)
    assert to_ana["video"].packets == video_before
    assert to_ana["audio"].packets > audio_before
    await ana.send({"type": "media_update", "receive_video": True})
    await until(lambda: to_ana["video"].packets > video_before + 10)
    # A patient may not share a screen until a host allows it.
    await ana.send({"type": "media_update", "screen": True})
    await until(lambda: any(m.get("code") == "forbidden" for m in ana.messages))
    await host.send({"type": "screen_allow", "member_id": ana.me, "allowed": True})
    await until(lambda: any(m["type"] == "screen_allowed" for m in ana.messages))


async def test_a_private_room_keeps_media_between_the_two_and_hides_them_from_the_group(
    media_room: MediaRoomClient, server: RunningServer
) -> None:
    host = await media_room.host()
    ana = await media_room.patient(host, 0)
    ben = await media_room.patient(host, 1)
    people = [host, ana, ben]
    for person in people:
        await person.send({"type": "media_join"})
    await until(lambda: all(sees(a, b, "video") for a in people for b in people if a is not b))
    await ana.send({"type": "help", "text": ""})
    await until(lambda: any(m["type"] == "help_received" for m in ana.messages))
    await server.app[ROOM_JOURNAL].flush()

    await host.send({"type": "private_room", "member_id": ana.me, "open": True})
    await until(lambda: any(m["type"] == "private_room" and m.get("mine") for m in ana.messages))
    told = [m for m in ben.messages if m["type"] == "private_room"]
    await until(lambda: any(m["type"] == "private_room" for m in ben.messages))
    told = [m for m in ben.messages if m["type"] == "private_room"]
    assert told[-1]["short_break"] is True and "with" not in told[-1]  # nobody else keeps it
    floated = next(m for m in host.messages if m["type"] == "float_needed")
    # The demo's supervisor is on call and its second clinician is not in this session.
    assert {r["as"] for r in floated["roster"]} >= {"primary"}
    assert all(set(r) == {"name", "as"} for r in floated["roster"])
    room = server.app[MEDIA][media_room.room_id]
    legs = room.forwarder.legs.values()
    ana_to_ben = next(
        g for g in legs if g.owner == ana.me and g.subscriber == ben.me and g.source == "video"
    )
    host_to_ana = next(
        g for g in legs if g.owner == host.me and g.subscriber == ana.me and g.source == "video"
    )
    await asyncio.sleep(0.5)
    frozen, flowing = ana_to_ben.packets, host_to_ana.packets
    await asyncio.sleep(1.0)
    assert ana_to_ben.packets == frozen  # the group no longer sees or hears her
    assert host_to_ana.packets > flowing  # she and her clinician still see each other
    await server.app[ROOM_JOURNAL].flush()
    async with server.app[ENGINE].connect() as conn:
        kinds = (
            (
                await conn.execute(
                    sa.select(crisis_steps.c.kind)
                    .join(crisis_events, crisis_events.c.id == crisis_steps.c.event_id)
                    .where(crisis_events.c.session_id == media_room.room_id)
                )
            )
            .scalars()
            .all()
        )
    assert "private_room_opened" in kinds

    await host.send({"type": "private_room", "member_id": ana.me, "open": False})
    await until(lambda: ana_to_ben.packets > frozen + 10)


async def test_an_observing_supervisor_takes_a_patient_aside_and_is_then_seen_and_heard(
    media_room: MediaRoomClient, server: RunningServer
) -> None:
    host = await media_room.host()
    ana = await media_room.patient(host, 0)
    ben = await media_room.patient(host, 1)
    supervisor = await media_room._open(
        await signed_in(server, *staff_login(media_room.demo, "supervisor"))
    )
    for person in (host, ana, ben, supervisor):
        await person.send({"type": "media_join"})
    await until(lambda: sees(supervisor, ana, "video") and sees(ana, host, "video"))
    assert ana.peer.frames[(supervisor.me, "video")] == 0  # unseen in the group
    await supervisor.send({"type": "private_room", "member_id": ana.me, "open": True})
    await until(lambda: any(m["type"] == "private_room" and m.get("mine") for m in ana.messages))
    # The supervisor's page starts its media over with camera and microphone.
    supervisor.peer = ClientPeer("supervisor")
    await supervisor.send({"type": "media_join", "restart": True})
    await until(lambda: sees(ana, supervisor, "video") and sees(ana, supervisor, "audio"))
    assert any(m["type"] == "member" and m["member"]["id"] == supervisor.me for m in ana.messages)
    assert not any(
        m["type"] == "member" and m["member"]["id"] == supervisor.me for m in ben.messages
    )
    assert ben.peer.frames[(supervisor.me, "video")] == 0
