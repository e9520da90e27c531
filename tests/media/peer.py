"""A real aiortc client peer that answers the server's media offers and counts frames."""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
from collections import Counter
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame


class ToneTrack(AudioStreamTrack):
    """A loud 440 Hz tone: someone speaking, as far as audio levels go."""

    async def recv(self) -> AudioFrame:
        frame = await super().recv()
        start = self._timestamp - frame.samples
        rate = frame.sample_rate
        tone = array.array(
            "h",
            (
                int(16000 * math.sin(2 * math.pi * 440 * (start + i) / rate))
                for i in range(frame.samples)
            ),
        )
        out = AudioFrame(format="s16", layout="mono", samples=frame.samples)
        out.planes[0].update(tone.tobytes())
        out.pts, out.sample_rate, out.time_base = frame.pts, rate, frame.time_base
        return out


class ClientPeer:
    """Publishes a synthetic camera and microphone; decodes and counts what arrives."""

    def __init__(
        self, name: str, *, audio: bool = True, video: bool = True, loud: bool = False
    ) -> None:
        self.name = name
        self.pc: RTCPeerConnection | None = None
        self.audio: MediaStreamTrack | None = (
            (ToneTrack() if loud else AudioStreamTrack()) if audio else None
        )
        self.video: MediaStreamTrack | None = VideoStreamTrack() if video else None
        self.frames: Counter[tuple[str, str]] = Counter()
        self.tracks: dict[str, dict[str, str]] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self.offers = 0

    async def on_offer(self, message: dict[str, Any]) -> str:
        """Answer an offer: send on the publish m-lines, receive on the rest."""
        self.offers += 1
        if self.pc is None:
            self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
            self.pc.on("track", self._on_track)
        pc = self.pc
        await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
        publish = message["publish"]
        self.tracks = message["tracks"]
        for transceiver in pc.getTransceivers():
            mine = {publish.get("audio"): self.audio, publish.get("video"): self.video}
            if transceiver.mid in mine and transceiver.mid is not None:
                track = mine[transceiver.mid]
                if track is not None and transceiver.sender.track is None:
                    transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendonly" if track is not None else "inactive"
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.pc is not None
        mid = next((t.mid for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        task = asyncio.create_task(self._read(track, mid))
        self._readers.add(task)

    async def _read(self, track: MediaStreamTrack, mid: str | None) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                info = self.tracks.get(mid or "")
                if info is not None:
                    self.frames[(info["member_id"], info["source"])] += 1

    async def close(self) -> None:
        """Stop reading and close the connection."""
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pc is not None:
            await self.pc.close()
