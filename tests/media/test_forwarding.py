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
