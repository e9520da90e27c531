"""Join latency in Chromium: a patient admitted to a 13-person room -> their first remote frame.

Starts `python -m server` (SQLite, or PostgreSQL with `--db postgresql`) with the demo
program and one group, seeded with consents and a check-in through the server's own
functions. The clinician hosts over the room WebSocket and admits 11 patients; those 12
are aiortc peers in this process that publish VP8 (~500 kbps, 30 fps, encoded once and
replayed; a keyframe again whenever a PLI arrives, as a browser answers one) and Opus.
Then, `--joins` times, one more patient (a different one each time, so the room holds 13;
at most 19 joins with a 13-person room, as a group lists at most 30 patients) opens their
join link in headless Chromium with a fake camera and microphone, goes to the waiting room
and is admitted by the host; the page reports (requestVideoFrameCallback)
when the first remote video frame is presented and when all 12 are. Each joiner is
removed again before the next.

    python bench/join.py [--joins 19] [--room-size 13] [--db postgresql] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from processes import (  # noqa: E402  (bench/processes.py)
    Launched,
    Socket,
    client,
    database,
    free_port,
    make_demo,
    room_socket,
    seed_rooms,
    serve,
    sign_in,
    stop,
)
from sfu import AUDIO_PTIME, VIDEO_FPS, encode_media  # noqa: E402  (bench/sfu.py)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # The figure is the platform's, not the autoplay policy's: a patient has tapped the page.
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
]
ROOM_SIZE = 13  # the host, 11 patients already in, and the one who joins (by default)
GROUP_MEMBERS = 30  # a group's patient list holds at most this many (server/catalog/schemas.py)
FRAME_TIMEOUT_S = 15.0
PSFB, PLI_FMT = 206, 1

# Resolves with the epoch milliseconds at which the first remote video frame was presented,
# and again (window.allFrames) when `others` different remote videos have presented one.
WATCH_FRAMES = """
(others) => {
  const seen = new WeakSet();
  const presented = new Set();
  let first;
  window.firstFrame = new Promise((resolve) => { first = resolve; });
  let all;
  window.allFrames = new Promise((resolve) => { all = resolve; });
  const watch = () => {
    const remote = '#tiles figure:not([data-member="self"]) video';
    for (const video of document.querySelectorAll(remote)) {
      if (seen.has(video)) continue;
      seen.add(video);
      video.requestVideoFrameCallback((_now, meta) => {
        const at = performance.timeOrigin + meta.presentationTime;
        first(at);
        presented.add(video);
        if (presented.size >= others) all(at);
      });
    }
  };
  const tiles = document.getElementById("tiles");
  new MutationObserver(watch).observe(tiles, { childList: true, subtree: true });
  watch();
}
"""

# The promise named first, or null after the timeout.
WITHIN = """([name, ms]) =>
  Promise.race([window[name], new Promise((r) => setTimeout(() => r(null), ms))])"""


class Publisher:
    """A room member that publishes replayed VP8 and Opus and answers PLI with a keyframe."""

    def __init__(self, sock: Socket) -> None:
        self.sock = sock
        self.pc: Any = None
        self.wire: Any = None
        self.publish: dict[str, Any] = {}
        self.send: dict[str, tuple[int, int]] = {}
        self.seq = {"audio": 1000, "video": 2000}
        self.ts = {"audio": 0, "video": 0}
        self.frame = 0
        self.plis = 0

    async def on_offer(self, message: dict[str, Any]) -> None:
        from aiortc import (
            RTCBundlePolicy,
            RTCConfiguration,
            RTCPeerConnection,
            RTCSessionDescription,
        )

        from rooms.media import hooks

        if self.pc is None:
            self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        await self.pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
        publish = {mid: source for source, mid in message["publish"].items() if mid}
        for transceiver in self.pc.getTransceivers():
            source = publish.get(transceiver.mid)
            if source in ("audio", "video"):
                transceiver.direction = "sendonly"
                self.publish[source] = transceiver
            elif source == "screen":
                transceiver.direction = "inactive"
            hooks.silence_sender(transceiver, lambda _p: None)
            hooks.silence_receiver(transceiver, lambda _p: None)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.send = {}
        if self.wire is None:
            self.wire = hooks.Wire(self.pc)
            self.wire.tap(lambda _data: None, self._on_rtcp)
        await self.sock.ws.send_json({"type": "media_answer", "sdp": self.pc.localDescription.sdp})

    def _on_rtcp(self, data: bytes) -> None:
        pos = 0
        while pos + 4 <= len(data):
            if data[pos + 1] == PSFB and data[pos] & 0x1F == PLI_FMT:
                self.frame = 0  # the replay's keyframe
                self.plis += 1
            pos += 4 * (int.from_bytes(data[pos + 2 : pos + 4], "big") + 1)

    def _agreed(self, source: str) -> tuple[int, int] | None:
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
        self.send[source] = found = (hooks.sender_ssrc(transceiver), params.codecs[0].payloadType)
        return found

    def send_frame(self, source: str, payloads: list[bytes], ts_step: int) -> None:
        agreed = self._agreed(source)
        if agreed is None:
            return
        ssrc, pt = agreed
        self.ts[source] = ts = (self.ts[source] + ts_step) & 0xFFFFFFFF
        seq = self.seq[source]
        last = len(payloads) - 1
        for index, payload in enumerate(payloads):
            marker = 0x80 if index == last else 0
            header = bytes([0x80, pt | marker]) + seq.to_bytes(2, "big")
            self.wire.send_rtp(header + ts.to_bytes(4, "big") + ssrc.to_bytes(4, "big") + payload)
            seq = (seq + 1) & 0xFFFF
        self.seq[source] = seq

    async def close(self) -> None:
        if self.wire is not None:
            self.wire.untap()
        if self.pc is not None:
            await self.pc.close()


async def _publish(sock: Socket, member: Publisher) -> None:
    """Answer every offer this member is sent, in order; everything else stays in its inbox."""
    offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def route(message: dict[str, Any]) -> None:
        (offers if message["type"] == "media_offer" else sock.inbox).put_nowait(message)

    sock.on_message = route
    await sock.ws.send_json({"type": "media_join"})
    while True:
        await member.on_offer(await offers.get())


async def _pace(members: list[Publisher], media: dict[str, Any]) -> None:
    video, audio = media["video"], media["audio"]
    loop = asyncio.get_running_loop()
    start, tick = loop.time(), 0
    frame_every = round(1 / VIDEO_FPS / AUDIO_PTIME * 1000)  # in audio ticks x 1000
    audio_ts, video_ts = int(48000 * AUDIO_PTIME), 90000 // VIDEO_FPS
    next_video = 0
    while True:
        for member in members:
            member.send_frame("audio", [audio[tick % len(audio)]], audio_ts)
        while next_video <= tick * 1000:
            for member in members:
                member.send_frame("video", video[member.frame % len(video)], video_ts)
                member.frame += 1
            next_video += frame_every
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * AUDIO_PTIME - loop.time()))


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def run(joins: int, db: str, room_size: int = ROOM_SIZE) -> dict[str, Any]:
    """Fill a room with `room_size - 1` publishers, then admit `joins` Chromium patients."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        async with database(db, data_dir) as database_url:
            launched = await make_demo(data_dir, free_port(), database_url)
            try:
                return await _measure(launched, data_dir, joins, db, room_size)
            finally:
                await stop(launched)


async def _measure(
    launched: Launched, data_dir: Path, joins: int, db: str, room_size: int
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from rooms.media import hooks

    hooks.use_host_addresses(["127.0.0.1"])
    media = encode_media()
    background = room_size - 2  # patients already in, besides the host
    (room,) = await seed_rooms(launched.env, launched.demo, 1, size=background + joins)
    await serve(launched, data_dir)
    staff = {m["role"]: m for m in launched.demo["staff"]}
    host_http = await sign_in(launched, staff["clinician"])
    clients = [host_http]
    sockets: list[Socket] = []
    members: list[Publisher] = []
    tasks: list[asyncio.Task[None]] = []
    first_ms: list[float] = []
    all_ms: list[float] = []
    incomplete = 0
    try:
        host = await room_socket(host_http, room["session_id"])
        sockets.append(host)
        for link in room["links"][:background]:
            http = client(launched)
            clients.append(http)
            async with http.get(link) as landing:
                landing.raise_for_status()
            sockets.append(await room_socket(http, room["session_id"]))
        await host.ws.send_json({"type": "admit_all"})
        for sock in sockets:
            member = Publisher(sock)
            members.append(member)
            tasks.append(asyncio.create_task(_publish(sock, member)))
        tasks.append(asyncio.create_task(_pace(members, media)))
        tasks.append(asyncio.create_task(_heartbeat(sockets)))
        await _until_flowing(members)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                for link in room["links"][background : background + joins]:
                    first, every = await _one_join(browser, host, link, room_size - 1)
                    first_ms.append(first)
                    if every is None:
                        incomplete += 1
                    else:
                        all_ms.append(every)
            finally:
                await browser.close()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for member in members:
            await member.close()
        for sock in sockets:
            with contextlib.suppress(Exception):
                await sock.close()
        for http in clients:
            await http.close()
    return {
        "machine": (
            f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "browser": "Chromium (Debian), headless, fake camera and microphone",
        "db": db,
        "room_size": room_size,
        "joins": len(first_ms),
        "first_frame_p50_ms": round(_percentile(first_ms, 50), 1) if first_ms else None,
        "first_frame_p95_ms": round(_percentile(first_ms, 95), 1) if first_ms else None,
        "first_frame_max_ms": round(max(first_ms), 1) if first_ms else None,
        "all_frames_p50_ms": round(_percentile(all_ms, 50), 1) if all_ms else None,
        "all_frames_p95_ms": round(_percentile(all_ms, 95), 1) if all_ms else None,
        "all_frames_incomplete": incomplete,
        "plis_answered": sum(m.plis for m in members),
    }


async def _until_flowing(members: list[Publisher]) -> None:
    async with asyncio.timeout(60):
        while not all(m.send.get("video") for m in members):  # noqa: ASYNC110 (polled state)
            await asyncio.sleep(0.1)


async def _heartbeat(sockets: list[Socket]) -> None:
    while True:
        await asyncio.sleep(10)
        for sock in sockets:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.send_json({"type": "ping", "t": time.time()})


async def _one_join(
    browser: Any, host: Socket, link: str, others: int
) -> tuple[float, float | None]:
    """One patient in Chromium: link, waiting room, admitted; ms to the first and last frame."""
    phone = {"width": 375, "height": 740}
    context = await browser.new_context(ignore_https_errors=True, viewport=phone)
    try:
        page = await context.new_page()
        while not host.inbox.empty():  # earlier members' news
            host.inbox.get_nowait()
        await page.goto(link)
        await page.get_by_role("link", name="Go to the waiting room").click()
        waiting = await host.until(
            lambda m: m["type"] == "member" and m["member"]["presence"] == "waiting"
        )
        member_id = waiting["member"]["id"]
        await page.wait_for_selector("#tiles", state="attached")
        await page.evaluate(WATCH_FRAMES, others)
        admitted_at = time.time() * 1000
        await host.ws.send_json({"type": "admit", "member_id": member_id})
        first = await page.evaluate(WITHIN, ["firstFrame", FRAME_TIMEOUT_S * 1000])
        if first is None:
            state = await page.evaluate(
                """() => [...document.querySelectorAll('#tiles figure')].map(f => [
                    f.dataset.member, f.querySelector('video').readyState,
                    f.querySelector('video').videoWidth, f.querySelector('video').paused])"""
            )
            raise RuntimeError(f"no remote frame within the timeout: {state}")
        every = await page.evaluate(WITHIN, ["allFrames", FRAME_TIMEOUT_S * 1000])
        await host.ws.send_json({"type": "remove", "member_id": member_id})
        return first - admitted_at, (None if every is None else every - admitted_at)
    finally:
        await context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=19, help="patients admitted one after another")
    parser.add_argument("--room-size", type=int, default=ROOM_SIZE, help="with the joiner")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # Every joiner is a different patient of the one group, beside those already in.
    most = GROUP_MEMBERS - (args.room_size - 2)
    if not 1 <= args.joins <= most:
        parser.error(f"--joins must be 1-{most} with --room-size {args.room_size}")
    result = asyncio.run(run(args.joins, args.db, args.room_size))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['machine']}; {result['db']}; {result['browser']}")
    print(
        f"  {result['joins']} joins into a {result['room_size']}-person room "
        f"({result['room_size'] - 1} publishing VP8 + Opus)"
    )
    print(
        f"  admit -> first remote frame  p50 {result['first_frame_p50_ms']} ms  "
        f"p95 {result['first_frame_p95_ms']} ms  max {result['first_frame_max_ms']} ms"
    )
    print(
        f"  admit -> all {result['room_size'] - 1} remote videos  "
        f"p50 {result['all_frames_p50_ms']} ms  "
        f"p95 {result['all_frames_p95_ms']} ms  incomplete {result['all_frames_incomplete']}"
    )


if __name__ == "__main__":
    main()
