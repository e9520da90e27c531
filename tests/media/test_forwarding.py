"""The forwarding SFU with real aiortc peers on loopback, driven directly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rooms.media import hooks
from rooms.media.room import MediaRoom
from tests.media.peer import ClientPeer


class Harness:
    def __init__(self) -> None:
        self.peers: dict[str, ClientPeer] = {}
        self.room = MediaRoom("room-1", self.signal)
        self._tasks: set[asyncio.Task[None]] = set()

    def signal(self, member_id: str, message: dict[str, Any]) -> None:
        if message["type"] == "media_offer":
            task = asyncio.create_task(self._answer(member_id, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, member_id: str, message: dict[str, Any]) -> None:
        peer = self.peers[member_id]
        sdp = await peer.on_offer(message)
        await self.room.answer(member_id, sdp)

    async def join(self, name: str, **kwargs: Any) -> ClientPeer:
        peer = ClientPeer(name, **kwargs)
        self.peers[name] = peer
        await self.room.join(name, publishes=True)
        return peer

    async def close(self) -> None:
        await self.room.close()
        for peer in self.peers.values():
            await peer.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    hooks.use_host_addresses(["127.0.0.1"])
    h = Harness()
    try:
        yield h
    finally:
        await h.close()
        hooks.use_host_addresses([])


async def until(predicate: Any, within: float = 20.0, debug: Any = lambda: "") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in time: {debug()}")
        await asyncio.sleep(0.1)


async def test_three_peers_each_receive_everyone_elses_audio_and_video(harness: Harness) -> None:
    names = ["ana", "ben", "cy"]
    for name in names:
        await harness.join(name)

    def everyone_sees_everyone() -> bool:
        return all(
            harness.peers[me].frames[(other, source)] >= 5
            for me in names
            for other in names
            if other != me
            for source in ("audio", "video")
        )

    await until(
        everyone_sees_everyone,
        within=30,
        debug=lambda: {n: dict(p.frames) for n, p in harness.peers.items()},
    )
    assert harness.room.forwarder.forwarded > 0
    # Nothing decodes or encodes on the server: no decoder thread, encoder or RTCP task.
    assert all(hooks.pipeline_idle(peer.pc) for peer in harness.room.peers.values())


async def test_members_are_offered_a_newcomers_tracks_once_the_newcomer_is_connected(
    harness: Harness,
) -> None:
    # Renegotiating everyone while the newcomer's DTLS handshake runs on the same loop
    # delays the newcomer's first picture; their tracks cannot flow before then anyway.
    ana = await harness.join("ana")
    await until(lambda: harness.room.peers["ana"].pc.connectionState == "connected")
    offered_while: list[str] = []
    answer = ana.on_offer

    async def on_offer(message: dict[str, Any]) -> str:
        if any(t["member_id"] == "ben" for t in message["tracks"].values()):
            offered_while.append(harness.room.peers["ben"].pc.connectionState)
        return await answer(message)

    ana.on_offer = on_offer  # type: ignore[method-assign]
    await harness.join("ben")
    await until(lambda: ana.frames[("ben", "video")] >= 5, within=30)
    assert offered_while and offered_while[0] == "connected"


async def test_renegotiating_a_member_does_not_ask_publishers_for_keyframes_again(
    harness: Harness,
) -> None:
    # Every join or leave renegotiates everyone; only a leg that starts needs a keyframe.
    await harness.join("ana")
    await harness.join("ben")
    await until(lambda: harness.peers["ana"].frames[("ben", "video")] >= 5, within=30)
    await asyncio.sleep(1.5)  # the newcomer's follow-up request (after 1 s) has gone out
    forwarder = harness.room.forwarder
    forwarder.flush_keyframe_requests()
    before = forwarder.keyframe_requests
    offers = harness.peers["ana"].offers
    ana = harness.room.peers["ana"]
    await harness.room._negotiate(ana)
    await until(lambda: harness.peers["ana"].offers > offers and not ana.negotiating)
    await asyncio.sleep(1.2)
    forwarder.flush_keyframe_requests()
    assert forwarder.keyframe_requests == before
    assert harness.peers["ana"].frames[("ben", "video")] > 5


async def test_four_publishers_each_receive_every_stream_also_once_mids_stop(
    harness: Harness,
) -> None:
    names = ["ana", "ben", "cy", "dee"]
    for name in names:
        await harness.join(name)

    def streams() -> dict[tuple[str, str, str], int]:
        return {
            (me, other, source): harness.peers[me].frames[(other, source)]
            for me in names
            for other in names
            if other != me
            for source in ("audio", "video")
        }

    await until(
        lambda: min(streams().values()) >= 5,
        within=60,
        debug=lambda: {n: dict(p.frames) for n, p in harness.peers.items()},
    )
    # The subscribers' receiver reports cover every leg: MID is no longer sent on any...
    legs = [leg for peer in harness.room.peers.values() for leg, _t in peer.legs.values()]
    assert len(legs) == 4 * 3 * 2  # each: the other three's audio and video
    await until(lambda: all(leg.demuxed for leg in legs), within=30)
    # ...and every stream still arrives without it.
    before = streams()
    await until(
        lambda: all(count >= before[key] + 5 for key, count in streams().items()),
        within=60,
        debug=lambda: {n: dict(p.frames) for n, p in harness.peers.items()},
    )
