"""SFU benchmark: server CPU per forwarded packet, latency and frame rate of one room.

Starts `python -m server serve` in its own process on a temporary SQLite database,
seeds K groups of N-1 patients (consented, checked in) and drives each room from 1-2
load-generator processes: one real aiortc peer per participant, joined over the room
WebSocket (hello, admit, media_join, media_offer/media_answer). Every peer publishes
VP8 (~500 kbps, 30 fps) and Opus (20 ms) encoded once before the run and replayed as
SRTP, and counts what it receives without decoding, so the server is what is measured.
`--peer browser` (the default) peers also send and answer RTCP as Chromium does (sender
and receiver reports, NACK, PLI, REMB, the MID extension until the server's first
report; bench/browser_rtp.py); `--peer raw` peers send media only. The same scenario
then runs against a baseline relay that decodes and re-encodes (aiortc's MediaRelay used
the default way) for a CPU ratio.

    python bench/sfu.py [--participants 13] [--groups 1] [--seconds 20] [--peer browser|raw]
                        [--no-baseline] [--pin] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fractions
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pyotp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from browser_rtp import (  # noqa: E402  (bench/browser_rtp.py)
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    BrowserRtp,
    OutStream,
)
from processes import consent_and_check_in, free_port, server_env  # noqa: E402  (bench/processes.py)

VIDEO_SIZE = (640, 360)
VIDEO_FPS = 30
VIDEO_BPS = 500_000
LOOP_FRAMES = 90  # 3 s of video, one keyframe at its start, replayed in a loop
AUDIO_PTIME = 0.020
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PEER_MODES = ("browser", "raw")
SILENT_GAP_S = 1.0  # a stream that delivers nothing for this long, mid-run, went silent


# Media encoded once ------------------------------------------------------------------


def encode_media() -> dict[str, Any]:
    """VP8 RTP payloads per frame (a moving pattern with detail) and Opus packets."""
    import av
    from aiortc.codecs.opus import OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder

    width, height = VIDEO_SIZE
    encoder = Vp8Encoder()
    encoder.target_bitrate = VIDEO_BPS
    rng = random.Random(7)
    gradient = bytes((x + y) & 0xFF for y in range(height) for x in range(width))
    detail = bytes(96 + rng.getrandbits(5) for _ in range(width * 48))
    chroma = bytes([128]) * (width * height // 4)
    frames: list[list[bytes]] = []
    for index in range(LOOP_FRAMES * 2):  # the first loop lets rate control settle
        shift = (index * 6) % len(gradient)
        luma = bytearray(gradient[shift:] + gradient[:shift])
        row = (index * 4) % (height - 48)
        moved = (index * 37) % len(detail)
        luma[row * width : (row + 48) * width] = detail[moved:] + detail[:moved]
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = index * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=index == LOOP_FRAMES)
        if index >= LOOP_FRAMES:
            frames.append(payloads)
    opus = OpusEncoder()
    audio: list[bytes] = []
    samples = int(48000 * AUDIO_PTIME)
    for index in range(50):
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        tone = b"".join(
            struct.pack("<h", int(6000 * ((((index * samples + i) // 55) % 2) * 2 - 1)))
            for i in range(samples)
        )
        frame.planes[0].update(tone)
        frame.sample_rate = 48000
        frame.pts = index * samples
        frame.time_base = fractions.Fraction(1, 48000)
        packets, _ = opus.encode(frame)
        audio.extend(packets)
    video_bytes = sum(len(p) for f in frames for p in f)
    return {
        "video": frames,
        "audio": audio or [b"\xf8\xff\xfe"],
        "video_kbps": round(video_bytes * 8 * VIDEO_FPS / len(frames) / 1000, 1),
        "video_pps": round(sum(len(f) for f in frames) * VIDEO_FPS / len(frames), 1),
    }


# Load generator (runs in worker processes) ---------------------------------------------


def _sdp_ssrcs(sdp: str) -> tuple[dict[int, tuple[str, str]], dict[str, dict[str, int]]]:
    """Every SSRC the offer announces as (kind, mid), and each m-line's extension ids."""
    streams: dict[int, tuple[str, str]] = {}
    ext: dict[str, dict[str, int]] = {}
    kind = ""
    mid = ""
    pending: dict[str, int] = {}
    ssrcs: list[int] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            if mid:
                ext[mid] = pending
            streams.update((s, (kind, mid)) for s in ssrcs)
            kind, mid, pending, ssrcs = line[2:].split(" ", 1)[0], "", {}, []
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=ssrc:"):
            ssrcs.append(int(line[7:].split(" ", 1)[0]))
        elif line.startswith("a=extmap:"):
            ident, uri = line[9:].split(" ", 1)
            pending[uri.strip()] = int(ident.split("/")[0])
    if mid:
        ext[mid] = pending
    streams.update((s, (kind, mid)) for s in ssrcs)
    return streams, ext


class Participant:
    """One aiortc peer: ICE/DTLS by aiortc, RTP sent and counted on its wire.

    `peer="raw"` sends media only (no RTCP, no MID); `peer="browser"` adds what Chromium
    sends and answers (bench/browser_rtp.py).
    """

    def __init__(self, name: str, stats: WorkerStats, peer: str = "raw") -> None:
        self.name = name
        self.stats = stats
        self.mode = peer
        self.member_id: str | None = None  # ours, from the room snapshot
        self.offers = 0  # media_offer messages answered
        self.pc: Any = None
        self.wire: Any = None
        self.video_ssrcs: set[int] = set()
        self.frames: Counter[int] = Counter()
        self.publish: dict[str, Any] = {}  # source -> transceiver
        self.send: dict[str, tuple[int, int, int | None]] = {}  # source -> (ssrc, pt, ext id)
        self.abs_id: int | None = None  # receive side: the id the server uses
        self.seq = {"audio": random.randrange(1 << 16), "video": random.randrange(1 << 16)}
        self.ts = {"audio": random.randrange(1 << 32), "video": random.randrange(1 << 32)}
        self.owners: dict[int, tuple[str, str]] = {}  # received SSRC -> (publisher, kind)
        self.pairs: Counter[tuple[str, str]] = Counter()  # (publisher, kind) -> packets
        self.last_rx: dict[int, float] = {}  # received SSRC -> wall time of its last packet
        self.max_gap: dict[int, float] = {}  # received SSRC -> longest silence while measuring
        self.browser: BrowserRtp | None = None
        if peer == "browser":
            self.browser = BrowserRtp(
                f"{name}-{random.getrandbits(32):08x}", self._send_rtp, self._send_rtcp
            )

    def _send_rtp(self, packet: bytes) -> bool:
        return self.wire is not None and bool(self.wire.send_rtp(packet))

    def _send_rtcp(self, packet: bytes) -> bool:
        return self.wire is not None and bool(self.wire.send_rtcp(packet))

    async def on_offer(self, message: dict[str, Any]) -> str:
        from aiortc import (
            RTCBundlePolicy,
            RTCConfiguration,
            RTCPeerConnection,
            RTCSessionDescription,
        )

        from rooms.media import hooks

        if self.pc is None:
            self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc = self.pc
        self.offers += 1
        await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
        publish = {mid: source for source, mid in message["publish"].items() if mid}
        for transceiver in pc.getTransceivers():
            source = publish.get(transceiver.mid)
            if source in ("audio", "video"):
                transceiver.direction = "sendonly"
                self.publish[source] = transceiver
            elif source == "screen":
                transceiver.direction = "inactive"
            hooks.silence_sender(transceiver, lambda _p: None)
            hooks.silence_receiver(transceiver, lambda _p: None)
        await pc.setLocalDescription(await pc.createAnswer())
        streams, ext = _sdp_ssrcs(message["sdp"])
        self.video_ssrcs = {ssrc for ssrc, (kind, _m) in streams.items() if kind == "video"}
        tracks = message.get("tracks") or {}
        for ssrc, (kind, mid) in streams.items():
            owner = (tracks.get(mid) or {}).get("member_id")
            if owner is not None and mid not in publish:
                self.owners[ssrc] = (str(owner), kind)
        if self.browser is not None:
            self.browser.kinds.update((ssrc, kind) for ssrc, (kind, _m) in streams.items())
        for mid, ids in ext.items():
            if mid not in publish and ABS_SEND_TIME_URI in ids:
                self.abs_id = ids[ABS_SEND_TIME_URI]
        self.send = {}  # re-read after every negotiation
        if self.wire is None:
            self.wire = hooks.Wire(pc)
            on_rtcp = self._on_rtcp if self.browser is not None else (lambda _data: None)
            self.wire.tap(self._on_rtp, on_rtcp)
        return str(pc.localDescription.sdp)

    def sending(self, source: str) -> tuple[int, int, int | None] | None:
        """(ssrc, payload type, extension id) once the wire is up and the m-line agreed."""
        found = self.send.get(source)
        if found is not None:
            return found
        from rooms.media import hooks

        transceiver = self.publish.get(source)
        if transceiver is None or self.wire is None or not self.wire.ready:
            return None
        params, _ = hooks.negotiated(self.pc, transceiver)
        if params is None or not params.codecs:
            return None
        uri = ABS_SEND_TIME_URI if source == "video" else AUDIO_LEVEL_URI
        ext_id = next((e.id for e in params.headerExtensions if e.uri == uri), None)
        found = (hooks.sender_ssrc(transceiver), params.codecs[0].payloadType, ext_id)
        self.send[source] = found
        if self.browser is not None:
            self.browser.add_stream(
                OutStream(
                    kind=source,
                    ssrc=found[0],
                    payload_type=found[1],
                    clock_rate=params.codecs[0].clockRate,
                    mid=transceiver.mid or "",
                    ext_ids={e.uri: e.id for e in params.headerExtensions},
                    cname=self.browser.cname,
                )
            )
        return found

    def send_media(self, source: str, loop: list[list[bytes]], count: int, ts_step: int) -> None:
        """The next frame of a pre-encoded loop: the shared position for raw peers, the
        stream's own for browser peers (a PLI sends it back to the loop's keyframe)."""
        if self.browser is None:
            self.send_frame(source, loop[count % len(loop)], ts_step)
            return
        if self.sending(source) is None:
            return
        stream = self.browser.out[source]
        index = stream.next_frame(len(loop)) if source == "video" else count % len(loop)
        self.stats.sent += self.browser.send_frame(source, loop[index], ts_step, time.time())

    def send_frame(self, source: str, payloads: list[bytes], ts_step: int) -> None:
        agreed = self.sending(source)
        if agreed is None:
            return
        ssrc, pt, ext_id = agreed
        if ext_id is None:
            ext = b""
        elif source == "video":
            stamp = int(time.time() * (1 << 18)) & 0xFFFFFF
            ext = b"\xbe\xde\x00\x01" + bytes([(ext_id << 4) | 2]) + stamp.to_bytes(3, "big")
        else:
            ext = b"\xbe\xde\x00\x01" + bytes([ext_id << 4, 0x80 | 30, 0, 0])
        first = 0x90 if ext else 0x80
        self.ts[source] = ts = (self.ts[source] + ts_step) & 0xFFFFFFFF
        last = len(payloads) - 1
        wire = self.wire
        seq = self.seq[source]
        for index, payload in enumerate(payloads):
            header = struct.pack(
                "!BBHII", first, pt | (0x80 if index == last else 0), seq, ts, ssrc
            )
            seq = (seq + 1) & 0xFFFF
            if wire.send_rtp(header + ext + payload):
                self.stats.sent += 1
        self.seq[source] = seq

    def _on_rtcp(self, data: bytes) -> None:
        if self.browser is not None:
            self.browser.on_rtcp(data, time.time())

    def _on_rtp(self, data: bytes) -> None:
        stats = self.stats
        stats.received += 1
        now = time.time()
        ssrc = int.from_bytes(data[8:12], "big")
        owner = self.owners.get(ssrc)
        if owner is not None:
            self.pairs[owner] += 1
        if stats.measuring:
            last = self.last_rx.get(ssrc)
            if last is not None and now - last > self.max_gap.get(ssrc, 0.0):
                self.max_gap[ssrc] = now - last
        self.last_rx[ssrc] = now
        stream = self.browser.on_rtp(data, now) if self.browser is not None else None
        if ssrc not in self.video_ssrcs:
            if stream is not None and stats.measuring and stream.kind == "audio":
                sent = self.browser.audio_send_time(stream, data)  # type: ignore[union-attr]
                if sent is not None:
                    stats.latency_audio.append(now - sent)
            return
        if data[1] & 0x80:
            self.frames[ssrc] += 1
        if not stats.measuring or self.abs_id is None or not data[0] & 0x10:
            return
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[offset : offset + 2] != b"\xbe\xde":
            return
        end = offset + 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
        pos = offset + 4
        while pos < end:
            head = data[pos]
            if head == 0:
                pos += 1
                continue
            ident, length = head >> 4, (head & 0x0F) + 1
            if ident == self.abs_id and length == 3:
                sent = int.from_bytes(data[pos + 1 : pos + 4], "big")
                stamp = int(now * (1 << 18)) & 0xFFFFFF
                stats.latency.append(((stamp - sent) & 0xFFFFFF) / (1 << 18))
                return
            pos += 1 + length

    def ready(self, others: int) -> bool:
        return len([c for c in self.frames.values() if c >= 5]) >= others

    async def close(self) -> None:
        if self.wire is not None:
            self.wire.untap()
        if self.pc is not None:
            await self.pc.close()


@dataclass
class WorkerStats:
    sent: int = 0
    received: int = 0
    measuring: bool = False
    latency: list[float] = field(default_factory=list)  # video, from abs-send-time
    latency_audio: list[float] = field(default_factory=list)  # from the server's SRs


async def _signal_server(
    spec: dict[str, Any], participant: Participant, http: aiohttp.ClientSession
) -> None:
    """The room WebSocket: hello, (auto-)admit, media_join, answer every offer."""
    ws = await http.ws_connect(
        f"{spec['base_url']}/ws/rooms/{spec['session_id']}", origin=spec["base_url"]
    )
    await ws.send_json({"type": "hello", "protocol": 1, "last_seq": None})

    async def heartbeat() -> None:
        # As the browser client does: a socket silent for 30 s is taken for a dropped
        # connection, which would start drop prompts and attendance writes mid-run.
        while not ws.closed:
            await asyncio.sleep(10)
            with contextlib.suppress(ConnectionError):
                await ws.send_json({"type": "ping", "t": time.time()})

    pinging = asyncio.create_task(heartbeat())
    joined = False
    try:
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                return
            message = json.loads(frame.data)
            kind = message["type"]
            if kind == "snapshot" and spec["host"]:
                # Patients who connected before the host wait in the host's snapshot;
                # only those who come later arrive as `member` messages.
                for member in message.get("members") or []:
                    if member["presence"] == "waiting":
                        await ws.send_json({"type": "admit", "member_id": member["id"]})
            if kind in ("snapshot", "resync") and not joined:
                participant.member_id = str(message["you"]["id"])
                if message["you"]["presence"] == "admitted":
                    joined = True
                    await ws.send_json({"type": "media_join"})
            elif kind == "member" and spec["host"] and message["member"]["presence"] == "waiting":
                await ws.send_json({"type": "admit", "member_id": message["member"]["id"]})
            elif kind == "media_offer":
                sdp = await participant.on_offer(message)
                await ws.send_json({"type": "media_answer", "sdp": sdp})
            elif kind == "error":
                print(f"{participant.name}: {message}", file=sys.stderr)
    finally:
        pinging.cancel()


async def _signal_baseline(spec: dict[str, Any], participant: Participant) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{spec['base_url']}/ws") as ws,
    ):
        await ws.send_json({"type": "join", "name": participant.name})
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                return
            message = json.loads(frame.data)
            if message["type"] == "media_offer":
                sdp = await participant.on_offer(message)
                await ws.send_json({"type": "media_answer", "sdp": sdp})


async def _http_for(spec: dict[str, Any], ssl_ctx: ssl.SSLContext | None) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_ctx if ssl_ctx is not None else False),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )
    if spec["host"]:
        staff = spec["staff"]
        signed = await http.post(
            spec["base_url"] + "/api/auth/session",
            json={
                "email": staff["email"],
                "password": staff["password"],
                "code": pyotp.TOTP(staff["totp_secret"]).now(),
            },
        )
        signed.raise_for_status()
    else:
        response = await http.get(spec["join_url"])
        response.raise_for_status()
    return http


async def _pace(period: float, tick: Any) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    count = 0
    while True:
        count += 1
        tick(count)
        delay = start + count * period - loop.time()
        if delay < -1.0:  # far behind (a saturated generator): do not burst to catch up
            start, count = loop.time(), 0
            delay = 0
        await asyncio.sleep(max(0.0, delay))


def _cpu_self() -> float:
    times = os.times()
    return times.user + times.system


async def _worker(conn: Connection, config: dict[str, Any]) -> None:
    from rooms.media import hooks

    hooks.use_host_addresses(["127.0.0.1"])
    media = config["media"]
    stats = WorkerStats()
    participants = [
        Participant(spec["name"], stats, peer=config["peer"]) for spec in config["specs"]
    ]
    ssl_ctx = ssl.create_default_context(cafile=config["ca"]) if config.get("ca") else None
    tasks: list[asyncio.Task[Any]] = []
    host_http: aiohttp.ClientSession | None = None
    sessions: list[aiohttp.ClientSession] = []
    for spec, participant in zip(config["specs"], participants, strict=True):
        if config["mode"] == "baseline":
            participant.member_id = participant.name  # the baseline relay's member ids
            tasks.append(asyncio.create_task(_signal_baseline(spec, participant)))
            continue
        if spec["host"]:
            # One sign-in for every room's host: TOTP codes are single use.
            if host_http is None:
                host_http = await _http_for(spec, ssl_ctx)
                sessions.append(host_http)
            http = host_http
        else:
            http = await _http_for(spec, ssl_ctx)
            sessions.append(http)
        tasks.append(asyncio.create_task(_signal_server(spec, participant, http)))

    video, audio = media["video"], [[packet] for packet in media["audio"]]

    def video_tick(count: int) -> None:
        for participant in participants:
            participant.send_media("video", video, count, 90000 // VIDEO_FPS)

    def audio_tick(count: int) -> None:
        for participant in participants:
            participant.send_media("audio", audio, count, int(48000 * AUDIO_PTIME))

    def rtcp_tick(_count: int) -> None:
        now = time.time()
        for participant in participants:
            if participant.browser is not None and participant.wire is not None:
                participant.browser.tick(now)

    tasks.append(asyncio.create_task(_pace(1 / VIDEO_FPS, video_tick)))
    tasks.append(asyncio.create_task(_pace(AUDIO_PTIME, audio_tick)))
    if config["peer"] == "browser":
        tasks.append(asyncio.create_task(_pace(0.05, rtcp_tick)))

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    others = config["participants"] - 1
    marks: dict[str, Any] = {}
    while True:
        command = await commands.get()
        if command == "ready":
            conn.send(
                {
                    "ready": sum(p.ready(others) for p in participants),
                    "of": len(participants),
                    "failed": [repr(t.exception()) for t in tasks if t.done() and t.exception()],
                }
            )
        elif command == "start":
            stats.latency.clear()
            stats.latency_audio.clear()
            for participant in participants:
                participant.max_gap.clear()
            stats.measuring = True
            marks = {
                "cpu": _cpu_self(),
                "wall": time.monotonic(),
                "sent": stats.sent,
                "received": stats.received,
                "frames": [Counter(p.frames) for p in participants],
                "pairs": [Counter(p.pairs) for p in participants],
                "rtcp": _rtcp_counts(participants),
            }
            conn.send("started")
        elif command == "stop":
            stats.measuring = False
            elapsed = time.monotonic() - marks["wall"]
            fps: list[float] = []
            for participant, before in zip(participants, marks["frames"], strict=True):
                rates = sorted(
                    (participant.frames[s] - before[s]) / elapsed for s in participant.frames
                )
                rates = [0.0] * max(0, others - len(rates)) + rates
                fps.append(rates[0] if rates else 0.0)
            pairs = []
            for participant, before in zip(participants, marks["pairs"], strict=True):
                gaps: dict[tuple[str, str], float] = {}
                for ssrc, gap in participant.max_gap.items():
                    owner = participant.owners.get(ssrc)
                    if owner is not None:
                        gaps[owner] = max(gaps.get(owner, 0.0), gap)
                for (owner, kind), total in participant.pairs.items():
                    pairs.append(
                        {
                            "subscriber": participant.member_id,
                            "publisher": owner,
                            "kind": kind,
                            "packets": total - before[(owner, kind)],
                            "ever": total,
                            "max_gap": gaps.get((owner, kind), 0.0),
                        }
                    )
            conn.send(
                {
                    "elapsed": elapsed,
                    "cpu": _cpu_self() - marks["cpu"],
                    "sent": stats.sent - marks["sent"],
                    "received": stats.received - marks["received"],
                    "fps_min": min(fps) if fps else 0.0,
                    "latency": _sample(stats.latency),
                    "latency_audio": _sample(stats.latency_audio),
                    "members": [
                        {
                            "name": p.name,
                            "member": p.member_id,
                            "room": s.get("session_id", ""),
                            "connected": p.wire is not None and p.wire.ready,
                            "publishing": len(p.send),
                            # Why a peer that is not connected is not: how far it got.
                            "state": (
                                "no offer"
                                if p.pc is None
                                else f"{p.pc.iceConnectionState}/{p.pc.connectionState}"
                            ),
                            "offers": p.offers,
                        }
                        for p, s in zip(participants, config["specs"], strict=True)
                    ],
                    "pairs": pairs,
                    "rtcp": _rtcp_counts(participants, since=marks["rtcp"]),
                }
            )
        elif command == "quit":
            break
    loop.remove_reader(conn.fileno())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for participant in participants:
        with contextlib.suppress(Exception):
            await participant.close()
    for http in sessions:
        await http.close()
    conn.send("bye")


def _sample(values: list[float], most: int = 50_000) -> list[float]:
    return random.sample(values, most) if len(values) > most else values


def _rtcp_counts(
    participants: list[Participant], since: dict[str, Any] | None = None
) -> dict[str, Any]:
    """RTCP sent and received by packet type, packets sent with MID, and the rest of
    what the browser-like peers did (totals, or the change since `since`)."""
    sent: Counter[str] = Counter()
    received: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    for participant in participants:
        browser = participant.browser
        if browser is None:
            continue
        sent.update(browser.rtcp_sent)
        received.update(browser.rtcp_received)
        extra["mid_packets"] += browser.mid_packets
        extra["retransmitted"] += browser.retransmitted
        extra["retransmit_refused"] += browser.retransmit_refused
        extra["keyframes_on_request"] += browser.keyframes_on_request
        for stream in browser.ins.values():
            extra["lost"] += max(
                0, stream.cycles + stream.max_seq - stream.base + 1 - stream.received
            )
    counts = {"sent": dict(sent), "received": dict(received), **extra}
    if since is None:
        return counts
    return {
        "sent": _minus(sent, since["sent"]),
        "received": _minus(received, since["received"]),
        **{k: v - since.get(k, 0) for k, v in extra.items()},
        "mid_packets_total": extra["mid_packets"],
        "sent_total": dict(sent),
        "received_total": dict(received),
    }


def _minus(now: Counter[str], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(now.items())}


def _worker_main(conn: Connection, config: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_worker(conn, config))


# Seeding the server's database ------------------------------------------------------------


async def _seed(env: dict[str, str], groups: int, participants: int) -> list[dict[str, Any]]:
    """K groups of N-1 patients, each consented and checked in for the group's session."""
    import sqlalchemy as sa

    from server.accounts import joinlinks
    from server.catalog import patients as catalog_patients
    from server.catalog import schedule as catalog_schedule
    from server.catalog.schemas import GroupIn, PatientIn, SlotIn
    from server.clock import utcnow
    from server.config import Settings
    from server.demo import DEMO_TIME_ZONE
    from server.phi import ensure_keyring
    from server.storage.engine import create_engine
    from server.storage.tables import programs, staff

    settings = Settings.from_env(env)
    keyring, _ = ensure_keyring(settings.secret_key_file)
    engine = create_engine(settings.database_url)
    now = utcnow()
    out: list[dict[str, Any]] = []
    try:
        async with engine.begin() as conn:
            program_id = (await conn.execute(sa.select(programs.c.id))).scalar_one()
            clinicians = [
                row.id
                for row in await conn.execute(
                    sa.select(staff.c.id).where(staff.c.role == "clinician").order_by(staff.c.email)
                )
            ]
            for g in range(groups):
                patients: list[dict[str, Any]] = []
                for p in range(participants - 1):
                    patient = await catalog_patients.create_patient(
                        conn,
                        keyring,
                        PatientIn(
                            program_id=program_id,
                            legal_name=f"Bench G{g} P{p} Example",
                            display_name=f"G{g}P{p}",
                            date_of_birth=dt.date(1990, 1 + p % 12, 1 + g % 28),
                            home_address=f"{100 + p} Example Street, Sacramento, CA 95814",
                            backup_phone=f"(555) 010-{100 + p:04d}",
                            time_zone=DEMO_TIME_ZONE,
                        ),
                        now,
                    )
                    patients.append({"id": patient["id"]})
                await catalog_schedule.create_group(
                    conn,
                    GroupIn(
                        program_id=program_id,
                        name=f"Benchmark group {g + 1}",
                        lead_clinician_id=clinicians[0],
                        cofacilitator_id=clinicians[1],
                        member_ids=[p["id"] for p in patients],
                        time_zone=DEMO_TIME_ZONE,
                        schedule=[
                            SlotIn(day=d, start="18:00", end="21:00")
                            for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                        ],
                        template="evening-group-180",
                        starts_on=now.date(),
                    ),
                    now,
                    settings.schedule_horizon_days,
                )
                for patient in patients:
                    slots = await joinlinks.patient_sessions(conn, patient["id"], now)
                    link = await joinlinks.issue(
                        conn,
                        patient_id=patient["id"],
                        session_id=slots[0].session_id,
                        issued_by=clinicians[0],
                        now=now,
                        grace=dt.timedelta(minutes=60),
                        standing_for=dt.timedelta(days=1),
                    )
                    patient["join_url"] = f"{settings.public_url}/j/{link.token}"
                    patient["session_id"] = session_id = link.session_id
                    await consent_and_check_in(conn, keyring, patient["id"], session_id)
                out.append({"session_id": patients[0]["session_id"], "patients": patients})
    finally:
        await engine.dispose()
    return out


# Processes under test -----------------------------------------------------------------


def _cpu_of(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def _drain(
    stream: asyncio.StreamReader | None, keep: list[bytes], copy: BinaryIO | None = None
) -> None:
    # The child must never block on a full pipe; the last lines are kept for errors.
    if stream is None:
        return
    while line := await stream.readline():
        keep.append(line)
        del keep[:-50]
        if copy is not None:
            copy.write(line)


ALL_CPUS = sorted(os.sched_getaffinity(0))  # before --pin narrows this process's own


def _floor_us_per_packet(count: int = 40_000) -> float:
    """SRTP protect + sendto of a ~1.1 kB packet on loopback: the cost no SFU avoids.

    Made with the SFU's own primitive (hooks.SrtpOut: one copy into libsrtp's buffer,
    encrypted in place, sent from there), so the difference to the SFU's cost per packet
    is everything else the forwarding path does.
    """
    import pylibsrtp

    from rooms.media.hooks import SrtpOut

    key = os.urandom(30)

    def session() -> SrtpOut:
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        return SrtpOut(pylibsrtp.Session(policy))

    out = session()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    address = sink.getsockname()
    packet = bytearray(struct.pack("!BBHII", 0x80, 97, 0, 0, 1234) + bytes(1100))
    size = len(packet)
    started = time.perf_counter()
    for seq in range(count):
        packet[2:4] = (seq & 0xFFFF).to_bytes(2, "big")
        packet[4:8] = (seq >> 16).to_bytes(4, "big")  # new timestamp on each sequence wrap
        if seq and not seq & 0xFFFF:
            out = session()  # a fresh context: libsrtp would refuse the wrapped numbering
        out.buffer[0:size] = packet
        data = out.protect(size)
        with contextlib.suppress(BlockingIOError):
            sender.sendto(data, address)
    elapsed = time.perf_counter() - started
    sink.close()
    sender.close()
    return elapsed / count * 1e6


def _pin_threads(pid: int, cpus: set[int]) -> int:
    """Put every thread of a process on these CPUs; how many threads there were.

    `sched_setaffinity(pid)` moves only the thread whose id is `pid`: threads the process
    already started (aiosqlite's, the default executor's, aioice's) keep their old mask,
    and threads inherit the mask of the thread that starts them.
    """
    pinned = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, FileNotFoundError):
            continue  # ended meanwhile
        pinned += 1
    return pinned


def _threads_on(pid: int) -> dict[str, int]:
    """How many of a process's threads may run on which CPU set (e.g. {"0": 7})."""
    found: Counter[str] = Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            cpus = os.sched_getaffinity(int(tid))
        except (ProcessLookupError, FileNotFoundError):
            continue
        found[",".join(map(str, sorted(cpus)))] += 1
    return dict(found)


async def _drive(
    specs: list[dict[str, Any]],
    *,
    mode: str,
    peer: str,
    participants: int,
    workers: int,
    media: dict[str, Any],
    ca: str | None,
    server_pid: int,
    seconds: float,
    warmup: float,
    ready_within: float,
    pin: bool = False,
    probe: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Run the generators against a started server; measure for `seconds`.

    With `pin`, every thread of the server gets CPU 0 to itself and everything else (the
    generators, this process) the other CPUs, as a node with a core of its own would run.
    """
    ctx = multiprocessing.get_context("spawn")
    cpus = ALL_CPUS
    rest = set(cpus[1:])
    if pin:
        if not rest:
            raise SystemExit("--pin needs at least two CPUs")
        _pin_threads(server_pid, {cpus[0]})
        os.sched_setaffinity(0, rest)
    shares: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    for spec in specs:
        # Every room's host in worker 0 (they share one sign-in), the rest spread evenly.
        index = 0 if spec["host"] else spec["index"] % workers
        shares[index].append(spec)
    shares = [s for s in shares if s]
    pipes: list[Connection] = []
    procs = []
    for share in shares:
        parent, child = ctx.Pipe()
        config = {
            "specs": share,
            "mode": mode,
            "peer": peer,
            "media": media,
            "ca": ca,
            "participants": participants,
        }
        proc = ctx.Process(target=_worker_main, args=(child, config), daemon=True)
        proc.start()
        if pin and proc.pid is not None:
            _pin_threads(proc.pid, rest)
        pipes.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()

    async def ask(command: str) -> list[Any]:
        for pipe in pipes:
            pipe.send(command)
        return [await loop.run_in_executor(None, pipe.recv) for pipe in pipes]

    pinned: dict[str, Any] = {}
    probed: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + ready_within
        ready = 0
        while time.monotonic() < deadline:
            answers = await ask("ready")
            ready = sum(a["ready"] for a in answers)
            failed = [f for a in answers for f in a["failed"]]
            if failed:
                raise RuntimeError(f"a load generator failed: {failed[:3]}")
            if ready == len(specs):
                break
            await asyncio.sleep(0.5)
        if pin:
            # Again now the rooms are up: aiortc and aioice start their threads late.
            pinned["server_threads"] = _pin_threads(server_pid, {cpus[0]})
            for proc in procs:
                if proc.pid is not None:
                    _pin_threads(proc.pid, rest)
        await asyncio.sleep(warmup)
        await ask("start")
        cpu_before = _cpu_of(server_pid)
        began = time.monotonic()
        await asyncio.sleep(seconds)
        cpu_after = _cpu_of(server_pid)
        elapsed = time.monotonic() - began
        if pin:
            pinned["server_thread_cpus"] = _threads_on(server_pid)
        if probe is not None:
            probed = await probe()
        results = await ask("stop")
        await ask("quit")
    finally:
        for proc in procs:
            await loop.run_in_executor(None, proc.join, 10)
            if proc.is_alive():
                proc.kill()
    received = sum(r["received"] for r in results)
    sent = sum(r["sent"] for r in results)
    server_cores = (cpu_after - cpu_before) / elapsed
    forwarded_pps = received / elapsed
    video = _percentiles(x for r in results for x in r["latency"])
    audio = _percentiles(x for r in results for x in r["latency_audio"])
    both = _percentiles(x for r in results for key in ("latency", "latency_audio") for x in r[key])
    return {
        "ready_peers": ready,
        "server_cpu_cores": round(server_cores, 3),
        "sent_pps": round(sent / elapsed, 1),
        "expected_pps": round(sent / elapsed * (participants - 1), 1),
        "forwarded_pps": round(forwarded_pps, 1),
        "us_per_packet": round(server_cores * 1e6 / forwarded_pps, 2) if forwarded_pps else None,
        "latency_p50_ms": both[0],
        "latency_p99_ms": both[1],
        "latency_video_p50_ms": video[0],
        "latency_video_p99_ms": video[1],
        "latency_audio_p50_ms": audio[0],
        "latency_audio_p99_ms": audio[1],
        "subscriber_fps_min": round(min(r["fps_min"] for r in results), 1),
        "generator_cpu_cores": [round(r["cpu"] / r["elapsed"], 3) for r in results],
        **_reach(results, elapsed),
        **_rtcp_totals(results),
        **pinned,
        **probed,
    }


def _percentiles(values: Iterable[float]) -> tuple[float | None, float | None]:
    """p50 and p99 in milliseconds (None with too few samples)."""
    ordered = sorted(values)
    if len(ordered) <= 100:
        return None, None
    cuts = statistics.quantiles(ordered, n=100)
    return round(cuts[49] * 1000, 2), round(cuts[98] * 1000, 2)


def _reach(results: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    """Which (publisher, subscriber, kind) pairs got media while measuring, and how much.

    Every member of a room should receive every other member's audio and video; a pair
    missing from what the subscribers counted received nothing at all.
    """
    rooms: dict[str, list[str]] = {}
    for r in results:
        for m in r["members"]:
            if m["member"] is not None:
                rooms.setdefault(m["room"], []).append(m["member"])
    got = {(p["publisher"], p["subscriber"], p["kind"]): p for r in results for p in r["pairs"]}
    none: list[str] = []
    silent: list[str] = []
    per_pair: dict[str, list[int]] = {"audio": [], "video": []}
    per_stream: dict[tuple[str, str], int] = {}
    for members in rooms.values():
        for publisher in members:
            for subscriber in members:
                if subscriber == publisher:
                    continue
                for kind in ("audio", "video"):
                    pair = got.get((publisher, subscriber, kind))
                    packets = pair["packets"] if pair else 0
                    per_pair[kind].append(packets)
                    per_stream[(publisher, kind)] = per_stream.get((publisher, kind), 0) + packets
                    name = f"{publisher}->{subscriber}:{kind}"
                    if packets == 0:
                        none.append(name)
                    elif pair and pair["max_gap"] > SILENT_GAP_S:
                        silent.append(name)
    streams = {k: [v for (_p, kind), v in per_stream.items() if kind == k] for k in per_pair}
    everyone = [m for r in results for m in r["members"]]
    return {
        "peers_connected": sum(m["connected"] for m in everyone),
        "peers_not_connected": [
            f"{m['name']}: {m['state']}, {m['offers']} offers"
            for m in everyone
            if not m["connected"]
        ][:6],
        "peers_publishing_both": sum(m["publishing"] == 2 for m in everyone),
        "pairs_expected": sum(len(v) for v in per_pair.values()),
        "pairs_without_packets": len(none),
        "pairs_silent": len(silent),  # got packets, but none for over SILENT_GAP_S at a time
        "pairs_problem_sample": (none + silent)[:6],
        "min_pair_pps": {k: round(min(v) / elapsed, 1) if v else None for k, v in per_pair.items()},
        "min_stream_pps": {
            k: round(min(v) / elapsed, 1) if v else None for k, v in streams.items()
        },
    }


def _rtcp_totals(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The browser-like peers' RTCP and MID counts over the measured time, all generators."""
    sent: Counter[str] = Counter()
    received: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    sent_total: Counter[str] = Counter()
    received_total: Counter[str] = Counter()
    for r in results:
        rtcp = r["rtcp"]
        sent.update(rtcp["sent"])
        received.update(rtcp["received"])
        sent_total.update(rtcp.get("sent_total", {}))
        received_total.update(rtcp.get("received_total", {}))
        extra.update({k: v for k, v in rtcp.items() if isinstance(v, int)})
    return {
        "rtcp_sent": dict(sorted(sent.items())),
        "rtcp_received": dict(sorted(received.items())),
        "rtcp_sent_whole_run": dict(sorted(sent_total.items())),
        "rtcp_received_whole_run": dict(sorted(received_total.items())),
        "mid_packets_sent": extra["mid_packets_total"],
        "mid_packets_measured": extra["mid_packets"],
        "retransmitted": extra["retransmitted"],
        "retransmit_refused": extra["retransmit_refused"],
        "keyframes_on_request": extra["keyframes_on_request"],
        "receiver_lost": extra["lost"],
    }


async def run_sfu(
    participants: int,
    groups: int,
    seconds: float,
    workers: int,
    media: dict[str, Any],
    pin: bool = False,
    peer: str = "browser",
    server_log: str | None = None,
) -> dict[str, Any]:
    """The real server with K rooms of N peers (its output copied to `server_log`)."""
    with contextlib.ExitStack() as stack:
        copy = stack.enter_context(open(server_log, "wb")) if server_log else None  # noqa: ASYNC230
        return await _run_sfu(participants, groups, seconds, workers, media, pin, peer, copy)


async def _run_sfu(
    participants: int,
    groups: int,
    seconds: float,
    workers: int,
    media: dict[str, Any],
    pin: bool,
    peer: str,
    copy: BinaryIO | None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        port = free_port()
        env = server_env(data_dir, port)
        if copy is not None:
            env["IOP_LOG_LEVEL"] = "info"
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "demo",
            "--json",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await demo.communicate()
        clinician = next(m for m in json.loads(out)["staff"] if m["role"] == "clinician")
        rooms = await _seed(env, groups, participants)
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        tail: list[bytes] = []
        drain = asyncio.create_task(_drain(server.stdout, tail, copy))
        try:
            base = f"https://127.0.0.1:{port}"
            ca = data_dir / "certs" / "ca.crt"
            await _wait_ready(base, ca, server)
            specs: list[dict[str, Any]] = []
            for g, room in enumerate(rooms):
                common = {"base_url": base, "session_id": room["session_id"]}
                specs.append(
                    {**common, "name": f"g{g}-host", "host": True, "index": 0, "staff": clinician}
                )
                for p, patient in enumerate(room["patients"], start=1):
                    specs.append(
                        {
                            **common,
                            "name": f"g{g}-p{p}",
                            "host": False,
                            "index": p,
                            "join_url": patient["join_url"],
                        }
                    )
            ssl_ctx = ssl.create_default_context(cafile=str(ca))

            async def probe() -> dict[str, Any]:
                # Another change may add a `fanout` field; older servers do not have it.
                try:
                    async with (
                        aiohttp.ClientSession(
                            connector=aiohttp.TCPConnector(ssl=ssl_ctx)
                        ) as client,
                        client.get(base + "/healthz") as response,
                    ):
                        health = await response.json()
                except (aiohttp.ClientError, ValueError) as exc:
                    return {"fanout": f"unavailable: {type(exc).__name__}"}
                if isinstance(health, dict) and "fanout" in health:
                    return {"fanout": health["fanout"]}
                return {}

            result = await _drive(
                specs,
                mode="sfu",
                peer=peer,
                probe=probe,
                participants=participants,
                workers=workers,
                media=media,
                ca=str(ca),
                server_pid=server.pid,
                seconds=seconds,
                warmup=3.0,
                ready_within=60.0,
                pin=pin,
            )
            if result["pairs_without_packets"] or result["pairs_silent"]:
                # What the server logged (warnings and up) says why media did not flow.
                sys.stderr.write(b"".join(tail).decode(errors="replace"))
        except Exception:
            sys.stderr.write(b"".join(tail).decode(errors="replace"))
            raise
        finally:
            if server.returncode is None:
                server.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait(), 15)
            if server.returncode is None:
                server.kill()
                await server.wait()
            await drain
    return result


async def _wait_ready(base: str, ca: Path, server: Any) -> None:
    for _ in range(600):
        if server.returncode is not None:
            raise RuntimeError("server exited during start-up")
        if ca.exists():  # noqa: ASYNC240 - one stat while waiting for start-up
            try:
                ssl_ctx = ssl.create_default_context(cafile=str(ca))
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as client,
                    client.get(base + "/healthz") as response,
                ):
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError, ssl.SSLError):
                pass
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


# Baseline: aiortc used the default way (decode, relay, re-encode per subscriber) -----------


async def baseline_server(port: int, participants: int) -> None:
    """Answer N peers' joins with one offer each, relaying decoded tracks to everyone."""
    from aiohttp import web
    from aiortc import (
        MediaStreamTrack,
        RTCBundlePolicy,
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpSender,
        RTCSessionDescription,
    )
    from aiortc.contrib.media import MediaRelay

    from rooms.media import hooks

    hooks.use_host_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    relay = MediaRelay()
    sources: dict[tuple[str, str], asyncio.Future[Any]] = {}
    joined: dict[str, web.WebSocketResponse] = {}
    pcs: dict[str, Any] = {}
    everyone = asyncio.Event()

    class Relayed(MediaStreamTrack):
        def __init__(self, owner: str, kind: str) -> None:
            super().__init__()
            self.kind = kind
            self._source = sources.setdefault((owner, kind), loop.create_future())
            self._inner: Any = None

        async def recv(self) -> Any:
            if self._inner is None:
                self._inner = relay.subscribe(await self._source, buffered=False)
            return await self._inner.recv()

    def prefer(transceiver: Any) -> None:
        wanted = "video/vp8" if transceiver.kind == "video" else "audio/opus"
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities(transceiver.kind).codecs
                if c.mimeType.lower() == wanted
            ]
        )

    async def offer(name: str) -> None:
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pcs[name] = pc
        publish = {k: pc.addTransceiver(k, direction="recvonly") for k in ("audio", "video")}
        for transceiver in publish.values():
            prefer(transceiver)

        @pc.on("track")  # type: ignore[misc]
        def on_track(track: Any) -> None:
            future = sources.setdefault((name, track.kind), loop.create_future())
            if not future.done():
                future.set_result(track)

        legs = []
        for other in sorted(joined):
            if other == name:
                continue
            for kind in ("audio", "video"):
                transceiver = pc.addTransceiver(Relayed(other, kind), direction="sendonly")
                prefer(transceiver)
                legs.append((transceiver, other, kind))
        await pc.setLocalDescription(await pc.createOffer())
        await joined[name].send_json(
            {
                "type": "media_offer",
                "sdp": pc.localDescription.sdp,
                "tracks": {t.mid: {"member_id": o, "source": k} for t, o, k in legs},
                "publish": {k: t.mid for k, t in publish.items()},
            }
        )

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        name = ""
        async for frame in ws:
            message = json.loads(frame.data)
            if message["type"] == "join":
                name = message["name"]
                joined[name] = ws
                if len(joined) == participants:
                    everyone.set()
                await everyone.wait()
                await offer(name)
            elif message["type"] == "media_answer":
                await pcs[name].setRemoteDescription(
                    RTCSessionDescription(message["sdp"], "answer")
                )
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("listening", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for pc in pcs.values():
        await pc.close()
    await runner.cleanup()


async def run_baseline(
    participants: int,
    seconds: float,
    workers: int,
    media: dict[str, Any],
    pin: bool = False,
    peer: str = "browser",
) -> dict[str, Any]:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),  # noqa: ASYNC240
        "--baseline-server",
        str(port),
        "--participants",
        str(participants),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    tail: list[bytes] = []
    assert server.stdout is not None
    first = await asyncio.wait_for(server.stdout.readline(), 30)
    drain = asyncio.create_task(_drain(server.stdout, tail))
    try:
        if b"listening" not in first:
            raise RuntimeError(f"baseline relay did not start: {first!r}")
        specs = [
            {"base_url": f"http://127.0.0.1:{port}", "name": f"b{i}", "host": False, "index": i}
            for i in range(participants)
        ]
        return await _drive(
            specs,
            mode="baseline",
            peer=peer,
            participants=participants,
            workers=workers,
            media=media,
            ca=None,
            server_pid=server.pid,
            seconds=seconds,
            warmup=3.0,
            ready_within=20.0,
            pin=pin,
        )
    except Exception:
        sys.stderr.write(b"".join(tail).decode(errors="replace"))
        raise
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait(), 15)
        if server.returncode is None:
            server.kill()
            await server.wait()
        await drain


# Command line ------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    media = encode_media()
    sfu = await run_sfu(
        args.participants,
        args.groups,
        args.seconds,
        args.workers,
        media,
        args.pin,
        args.peer,
        args.server_log,
    )
    floor = _floor_us_per_packet()
    result: dict[str, Any] = {
        "machine": (
            f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "participants": args.participants,
        "groups": args.groups,
        "seconds": args.seconds,
        "pinned": args.pin,
        "peer": args.peer,
        "video_kbps": media["video_kbps"],
        **sfu,
        "floor_us_per_packet": round(floor, 2),
        "floor_share": (round(floor / sfu["us_per_packet"], 3) if sfu["us_per_packet"] else None),
        "generator_saturated": any(c > 0.9 for c in sfu["generator_cpu_cores"]),
        "baseline_ratio": None,
    }
    if not args.no_baseline:
        base = await run_baseline(
            args.participants, args.seconds, args.workers, media, args.pin, args.peer
        )
        result["baseline"] = base
        # Per room: the baseline always runs one room.
        per_room = sfu["server_cpu_cores"] / args.groups
        result["baseline_ratio"] = (
            round(base["server_cpu_cores"] / per_room, 1) if per_room else None
        )
        if base["us_per_packet"] and sfu["us_per_packet"]:
            result["baseline_us_per_packet_ratio"] = round(
                base["us_per_packet"] / sfu["us_per_packet"], 1
            )
        cores = os.cpu_count() or 1
        if base["server_cpu_cores"] > 0.8 * cores or base["subscriber_fps_min"] < 0.8 * VIDEO_FPS:
            result["baseline_note"] = (
                f"the decode/re-encode relay saturates at {args.participants} peers on "
                f"{cores} cores ({base['server_cpu_cores']} cores busy, subscribers' minimum "
                f"{base['subscriber_fps_min']} fps of {VIDEO_FPS}): the ratio is a lower bound"
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=13)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="give the server CPU 0 to itself and the load generators the others",
    )
    parser.add_argument(
        "--peer",
        choices=PEER_MODES,
        default="browser",
        help="browser: RTCP both ways, NACK/PLI/REMB, MID until acknowledged (as Chromium); "
        "raw: media only",
    )
    parser.add_argument(
        "--server-log", metavar="FILE", help="write the server's output (level info) there"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        asyncio.run(baseline_server(args.baseline_server, args.participants))
        return
    if args.participants < 2:
        parser.error("--participants must be at least 2")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['machine']}; {args.groups} x {args.participants} {args.peer} peers, "
        f"{args.seconds:g} s, VP8 {result['video_kbps']} kbps + Opus"
    )
    for key, value in result.items():
        if key not in ("machine", "baseline"):
            print(f"  {key:<22} {value}")
    for key, value in result.get("baseline", {}).items():
        print(f"  baseline.{key:<13} {value}")


if __name__ == "__main__":
    main()
