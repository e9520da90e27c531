"""One room's media: a peer connection per member, legs between them, renegotiation.

The server is the only side that makes offers. aiortc cannot roll back a local offer,
so glare is avoided rather than resolved: a client that wants a change (share a screen,
stop receiving video) asks for it and the server offers. Each peer has at most one offer
in flight; a change that arrives meanwhile is folded into the next offer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters

from rooms.media import fanout, hooks, rtp
from rooms.media.forward import MID_URI, Forwarder, Leg, Track

log = structlog.get_logger(__name__)
SOURCES = ("audio", "video", "screen")
KINDS = {"audio": "audio", "video": "video", "screen": "video"}
ANSWER_TIMEOUT_S = 15.0
REPORT_INTERVAL_S = 1.0
SPEAKER_INTERVAL_S = 0.25
SPEAKER_MIN_LEVEL = 127 - 55  # quieter than -55 dBov is nobody speaking

Signal = Callable[[str, dict[str, Any]], None]


class MediaError(Exception):
    """A media request refused, with a code and a reason the client can show."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """What the room negotiates and caps."""

    video_codecs: tuple[str, ...] = ("video/VP8", "video/H264")
    camera_bps: int = 500_000
    screen_bps: int = 1_500_000


@dataclass(eq=False)
class Peer:
    """One member's peer connection to the server."""

    member_id: str
    pc: RTCPeerConnection
    publishes: bool
    publish: dict[str, RTCRtpTransceiver] = field(default_factory=dict)
    legs: dict[tuple[str, str], tuple[Leg, RTCRtpTransceiver]] = field(default_factory=dict)
    by_ssrc: dict[int, Track] = field(default_factory=dict)
    wire: hooks.Wire | None = None
    negotiating: bool = False
    dirty: bool = False
    offered_at: float = 0.0
    receive_video: bool = True
    live_sources: set[str] = field(default_factory=set)
    # Sources the member's answer turned on before their connection was up (see answer).
    pending_live: set[str] = field(default_factory=set)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False


class MediaRoom:
    """Forwards every member's published tracks to every other member of one room."""

    def __init__(
        self,
        room_id: str,
        signal: Signal,
        *,
        settings: MediaSettings | None = None,
        on_speaker: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        hooks.check_versions()
        hooks.use_short_mids()
        self.room_id = room_id
        self._signal = signal
        self._settings = settings or MediaSettings()
        self._on_speaker = on_speaker
        self._now = monotonic
        self.forwarder = Forwarder(monotonic=monotonic)
        self.peers: dict[str, Peer] = {}
        self._tracks: dict[tuple[str, str], Track] = {}
        self._blocked: dict[str, tuple[bool, bool]] = {}
        self._spaces: dict[str, str | None] = {}
        self.screen_sharer: str | None = None
        self._screen_allowed: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._speaker: str | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False

    # Lifecycle ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(
        self,
        member_id: str,
        *,
        publishes: bool,
        may_share_screen: bool = False,
        receive_video: bool = True,
        ice_servers: list[dict[str, Any]] | None = None,
    ) -> None:
        """Give a member a (fresh) peer connection and send them an offer.

        Joining again replaces the member's connection (a network change): only their
        own connection renegotiates; the others keep their legs, which re-base onto the
        new streams when they arrive.
        """
        if self._closed:
            raise MediaError("closed", "the room's media has ended")
        old = self.peers.pop(member_id, None)
        if old is not None:
            await self._close_peer(old)
        if may_share_screen:
            self._screen_allowed.add(member_id)
        # max-bundle: with aiortc's default (balanced) policy, an m-line created while
        # another of its kind exists keeps a transport that bundling then abandons.
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        peer = Peer(member_id, pc, publishes, receive_video=receive_video)

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                self._sync(peer)

        peer.ice_servers = ice_servers or []
        self.peers[member_id] = peer
        if publishes:
            for source in SOURCES:
                transceiver = pc.addTransceiver(KINDS[source], direction="recvonly")
                self._prefer_codecs(transceiver)
                track = self._tracks.get((member_id, source))
                if track is None:
                    track = Track(member_id, source, KINDS[source], sink=_NoSink())
                    self._tracks[(member_id, source)] = track
                hooks.silence_receiver(transceiver, self._receiver_ready(peer, source))
                peer.publish[source] = transceiver
            self._apply_blocks(member_id)
        for (owner, source), _track in list(self._tracks.items()):
            if owner != member_id and self._is_offered(owner, source):
                self._add_leg(peer, owner, source)
        peer.wire = None
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._report_loop(), name=f"media-{self.room_id}")
        await self._negotiate(peer)

    async def leave(self, member_id: str) -> None:
        """A member's media ends (they left, were removed, or hung up)."""
        peer = self.peers.pop(member_id, None)
        self._screen_allowed.discard(member_id)
        if self.screen_sharer == member_id:
            self.screen_sharer = None
        if peer is not None:
            await self._close_peer(peer)
        for source in SOURCES:
            self._set_live(member_id, source, False)
        for key in [k for k in self._tracks if k[0] == member_id]:
            del self._tracks[key]

    def spawn_leave(self, member_id: str) -> None:
        """`leave`, from code that cannot wait (a room change seen synchronously)."""
        if member_id in self.peers or any(k[0] == member_id for k in self._tracks):
            self._spawn(self.leave(member_id))

    async def close(self) -> None:
        """Close every connection and stop every task; safe to call twice."""
        self._closed = True
        tasks = list(self._tasks)
        if self._loop_task is not None:
            tasks.append(self._loop_task)
            self._loop_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        peers, self.peers = list(self.peers.values()), {}
        for peer in peers:
            await self._close_peer(peer)

    async def _close_peer(self, peer: Peer) -> None:
        peer.closed = True
        if peer.wire is not None:
            peer.wire.untap()
        for leg, _t in peer.legs.values():
            leg.negotiated = False
            self.forwarder.legs.pop((peer.member_id, leg.ssrc), None)
            self._relink(leg.owner, leg.source)
        for source in SOURCES:
            track = self._tracks.get((peer.member_id, source))
            if track is not None:
                track.sink = _NoSink()
        for ssrc in peer.by_ssrc:
            self.forwarder.tracks.pop(ssrc, None)
        await peer.pc.close()

    # Negotiation ----------------------------------------------------------------------

    def _prefer_codecs(self, transceiver: RTCRtpTransceiver) -> None:
        # No RTX: a retransmission then reuses the stream's own SSRC and payload type,
        # which the forwarder already rewrites per leg.
        kind = transceiver.kind
        capabilities = RTCRtpSender.getCapabilities(kind).codecs
        if kind == "video":
            wanted = [m.lower() for m in self._settings.video_codecs]
            chosen = sorted(
                (c for c in capabilities if c.mimeType.lower() in wanted),
                key=lambda c: wanted.index(c.mimeType.lower()),
            )
        else:
            chosen = [c for c in capabilities if c.mimeType.lower() == "audio/opus"]
        transceiver.setCodecPreferences(chosen)

    async def _negotiate(self, peer: Peer) -> None:
        if peer.closed:
            return
        if peer.negotiating and self._now() - peer.offered_at < ANSWER_TIMEOUT_S:
            peer.dirty = True
            return
        peer.negotiating = True
        peer.dirty = False
        peer.offered_at = self._now()
        try:
            offer = await peer.pc.createOffer()
            await peer.pc.setLocalDescription(offer)
        except InvalidStateError:
            # The connection closed underneath (its network went away): the member's
            # client will join again; nobody else is affected.
            peer.closed = True
            log.info("media.offer_on_closed_connection", room_id=self.room_id)
            return
        if peer.closed:
            return
        self._signal(
            peer.member_id,
            {
                "type": "media_offer",
                "sdp": peer.pc.localDescription.sdp,
                "tracks": {
                    t.mid: {"member_id": leg.owner, "source": leg.source}
                    for leg, t in peer.legs.values()
                    if t.mid is not None and t.direction == "sendonly"
                },
                "publish": {s: t.mid for s, t in peer.publish.items()},
                "ice_servers": peer.ice_servers,
            },
        )

    async def answer(self, member_id: str, sdp: str) -> None:
        """Apply a member's answer to the offer they were sent."""
        peer = self.peers.get(member_id)
        if peer is None or not peer.negotiating:
            raise MediaError("unexpected", "no media offer is waiting for an answer")
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError and its own errors for bad SDP
            raise MediaError("bad_sdp", "the answer could not be applied") from exc
        peer.negotiating = False
        if peer.wire is None and peer.pc.getTransceivers():
            # (An observer who arrives before anyone sends has nothing to receive yet.)
            peer.wire = hooks.Wire(peer.pc)
            peer.wire.tap(self._rtp_handler(peer), self._rtcp_handler(peer))
            for source in SOURCES:
                track = self._tracks.get((member_id, source))
                if track is not None:
                    track.sink = peer.wire
            for leg, _t in peer.legs.values():
                leg.sink = peer.wire
        self._sync(peer)
        connected = peer.wire is not None and peer.wire.ready
        for source, transceiver in peer.publish.items():
            sending = transceiver.currentDirection in ("recvonly", "sendrecv")
            if source == "screen" and self.screen_sharer != member_id:
                sending = False
            if sending and not connected:
                # Nothing of theirs can flow before their connection is up. Offering their
                # tracks to everyone else now would renegotiate every other member while
                # this member's DTLS handshake waits behind that work on the same loop,
                # which delays their first picture; _sync offers them once connected.
                peer.pending_live.add(source)
                continue
            peer.pending_live.discard(source)
            self._set_live(member_id, source, sending)
        if peer.dirty:
            await self._negotiate(peer)

    def _sync(self, peer: Peer) -> None:
        # Once DTLS is up, every negotiated m-line gets its parameters from here.
        if peer.closed or peer.wire is None or not peer.wire.ready:
            return
        for leg, transceiver in peer.legs.values():
            send, _ = hooks.negotiated(peer.pc, transceiver)
            if send is not None:
                self._sender_ready(peer, leg)(send)
        for source, transceiver in peer.publish.items():
            _, receive = hooks.negotiated(peer.pc, transceiver)
            if receive is not None:
                self._receiver_ready(peer, source)(receive)
        pending, peer.pending_live = peer.pending_live, set()
        for source in sorted(pending):
            self._set_live(peer.member_id, source, True)

    def _receiver_ready(self, peer: Peer, source: str) -> Callable[[RTCRtpReceiveParameters], None]:
        def ready(parameters: RTCRtpReceiveParameters) -> None:
            track = self._tracks[(peer.member_id, source)]
            track.mimes = {
                c.payloadType: c.mimeType.lower()
                for c in parameters.codecs
                if c.payloadType is not None
            }
            if parameters.codecs:
                track.clock_rate = parameters.codecs[0].clockRate
            track.ext_ids = {e.uri: e.id for e in parameters.headerExtensions}
            for encoding in parameters.encodings:
                if encoding.ssrc:
                    if track.ssrc != encoding.ssrc:
                        track.ssrc, track.base_seq = encoding.ssrc, None
                    peer.by_ssrc[encoding.ssrc] = track
                    self.forwarder.tracks[encoding.ssrc] = track

        return ready

    def _sender_ready(self, peer: Peer, leg: Leg) -> Callable[[RTCRtpSendParameters], None]:
        def ready(parameters: RTCRtpSendParameters) -> None:
            # Every renegotiation re-applies the parameters of every leg; only a leg that
            # starts (or starts again) needs a keyframe. Asking on each one made every
            # publisher send a keyframe to everyone whenever anyone joined.
            starting = not leg.negotiated
            payload_types = {
                c.mimeType.lower(): c.payloadType
                for c in parameters.codecs
                if c.payloadType is not None
            }
            ext_ids = {e.uri: e.id for e in parameters.headerExtensions}
            if starting or (payload_types, ext_ids, parameters.muxId) != (
                leg.payload_types,
                leg.ext_ids,
                leg.mid,
            ):
                # The subscriber may map this leg anew: it gets MID/RID again until its
                # receiver reports show it has (Forwarder.on_rtcp).
                leg.demuxed = False
            leg.payload_types = payload_types
            leg.ext_ids = ext_ids
            leg.mid = parameters.muxId
            leg.negotiated = True
            if peer.wire is not None:
                leg.sink = peer.wire
            self._relink(leg.owner, leg.source)
            self.forwarder.leg_changed(leg)
            if starting:
                leg.first_request_owed = True
                # A newcomer (or a re-enabled leg) needs a keyframe to show anything.
                self.forwarder.request_keyframe(leg.track)
                self.forwarder.request_keyframe_later(leg.track, 1.0)

        return ready

    # Legs -----------------------------------------------------------------------------

    def _is_live(self, owner: str, source: str) -> bool:
        peer = self.peers.get(owner)
        return peer is not None and source in peer.live_sources

    def _is_offered(self, owner: str, source: str) -> bool:
        # A newcomer's offer is being made anyway: it includes the tracks of a member whose
        # connection is still coming up, so nobody renegotiates again once it is.
        peer = self.peers.get(owner)
        return peer is not None and source in peer.live_sources | peer.pending_live

    def _set_live(self, owner: str, source: str, live: bool) -> None:
        owner_peer = self.peers.get(owner)
        was = owner_peer is not None and source in owner_peer.live_sources
        if owner_peer is not None:
            if live:
                owner_peer.live_sources.add(source)
            else:
                owner_peer.live_sources.discard(source)
        if was == live and owner_peer is not None:
            return
        for peer in self.peers.values():
            if peer.member_id == owner or peer.closed or peer.pc.connectionState == "closed":
                continue
            entry = peer.legs.get((owner, source))
            if live and (entry is None or entry[1].direction != "sendonly"):
                self._add_leg(peer, owner, source)
                self._spawn(self._negotiate(peer))
            elif not live and entry is not None and entry[1].direction == "sendonly":
                leg, transceiver = entry
                transceiver.direction = "inactive"
                leg.negotiated = False
                self._relink(owner, source)
                self._spawn(self._negotiate(peer))
        if live and source == "video":
            self.forwarder.request_keyframe(self._tracks.get((owner, source)))

    def _add_leg(self, peer: Peer, owner: str, source: str) -> None:
        entry = peer.legs.get((owner, source))
        if entry is not None:
            entry[1].direction = "sendonly"
            entry[0].wanted = self._wants(peer, source, owner)
            return
        kind = KINDS[source]
        transceiver = peer.pc.addTransceiver(kind, direction="sendonly")
        self._prefer_codecs(transceiver)
        hooks.set_stream_id(transceiver, f"{owner}:{'screen' if source == 'screen' else 'cam'}")
        leg = Leg(
            owner=owner,
            source=source,
            subscriber=peer.member_id,
            sink=peer.wire if peer.wire is not None else _NoSink(),
            ssrc=hooks.sender_ssrc(transceiver),
            clock_rate=48000 if kind == "audio" else 90000,
            wanted=self._wants(peer, source, owner),
        )
        hooks.silence_sender(transceiver, self._sender_ready(peer, leg))
        peer.legs[(owner, source)] = (leg, transceiver)
        self.forwarder.legs[(peer.member_id, leg.ssrc)] = leg

    def _wants(self, peer: Peer, source: str, owner: str) -> bool:
        # Media flows only within a space: the group, or a private room inside it.
        if self._spaces.get(owner) != self._spaces.get(peer.member_id):
            return False
        return source != "video" or peer.receive_video

    def set_space(self, member_id: str, space: str | None) -> None:
        """Move a member to a private room (or back to the group) without renegotiating:
        their connection stays up and only what is forwarded to and from them changes."""
        if self._spaces.get(member_id) == space:
            return
        self._spaces[member_id] = space
        for peer in self.peers.values():
            for (owner, source), (leg, _t) in peer.legs.items():
                if member_id not in (owner, peer.member_id):
                    continue
                wanted = self._wants(peer, source, owner)
                if leg.wanted != wanted:
                    leg.wanted = wanted
                    leg.map.gate()
                    self._relink(owner, source)
                    if wanted:
                        self.forwarder.request_keyframe(leg.track)

    def _relink(self, owner: str, source: str) -> None:
        track = self._tracks.get((owner, source))
        legs: list[Leg] = []
        for peer in self.peers.values():
            entry = peer.legs.get((owner, source))
            if entry is None:
                continue
            leg = entry[0]
            leg.track = track
            if leg.active and not peer.closed:
                legs.append(leg)
        if track is not None:
            track.legs = legs

    # Packets --------------------------------------------------------------------------

    def _rtp_handler(self, peer: Peer) -> Callable[[bytes], None]:
        by_ssrc = peer.by_ssrc
        forwarder = self.forwarder

        def on_rtp(data: bytes) -> None:
            track = by_ssrc.get(int.from_bytes(data[8:12], "big"))
            if track is None:
                track = self._learn(peer, data)
                if track is None:
                    return
            forwarder.on_rtp(track, data)

        return on_rtp

    def _learn(self, peer: Peer, data: bytes) -> Track | None:
        # A stream the SDP did not announce: its mid header extension says which m-line.
        try:
            view = rtp.parse(data)
        except rtp.RtpError:
            return None
        for source, transceiver in peer.publish.items():
            track = self._tracks.get((peer.member_id, source))
            if track is None:
                continue
            mid_id = track.ext_ids.get(MID_URI)
            for ext_id, value in view.extensions:
                if ext_id == mid_id and value.decode(errors="replace") == transceiver.mid:
                    peer.by_ssrc[view.ssrc] = track
                    self.forwarder.tracks[view.ssrc] = track
                    self.forwarder.request_keyframe(track)
                    return track
        return None

    def _rtcp_handler(self, peer: Peer) -> Callable[[bytes], None]:
        def on_rtcp(data: bytes) -> None:
            self.forwarder.on_rtcp(peer.member_id, data, peer.by_ssrc)

        return on_rtcp

    # Controls -------------------------------------------------------------------------

    def set_blocked(self, member_id: str, *, audio: bool, video: bool) -> None:
        """A host's mute: the server stops forwarding, whatever the client does."""
        self._blocked[member_id] = (audio, video)
        self._apply_blocks(member_id)

    def _apply_blocks(self, member_id: str) -> None:
        audio, video = self._blocked.get(member_id, (False, False))
        for source, blocked in (("audio", audio), ("video", video)):
            track = self._tracks.get((member_id, source))
            if track is None or track.blocked == blocked:
                continue
            track.blocked = blocked
            for leg in track.legs:
                leg.map.gate()
            if not blocked:
                self.forwarder.request_keyframe(track)

    def set_receive_video(self, member_id: str, receive: bool) -> None:
        """Audio-only mode: stop (or resume) sending others' camera video to this member."""
        peer = self.peers.get(member_id)
        if peer is None:
            raise MediaError("no_media", "media has not started")
        peer.receive_video = receive
        for (owner, source), (leg, _t) in peer.legs.items():
            if source != "video":
                continue
            leg.wanted = self._wants(peer, source, owner)
            leg.map.gate()
            self._relink(owner, source)
            if receive:
                self.forwarder.request_keyframe(leg.track)

    def allow_screen(self, member_id: str, allowed: bool) -> None:
        """A host lets a participant share their screen (or takes it back)."""
        if allowed:
            self._screen_allowed.add(member_id)
        else:
            self._screen_allowed.discard(member_id)
            if self.screen_sharer == member_id:
                self.share_screen(member_id, False)

    def share_screen(self, member_id: str, sharing: bool) -> None:
        """Start or stop a member's screen share: one at a time per room."""
        peer = self.peers.get(member_id)
        if peer is None or not peer.publishes:
            raise MediaError("no_media", "media has not started")
        if sharing:
            if member_id not in self._screen_allowed:
                raise MediaError("forbidden", "ask the clinician to allow screen sharing")
            if self.screen_sharer not in (None, member_id):
                raise MediaError("busy", "someone else is sharing their screen")
            self.screen_sharer = member_id
        elif self.screen_sharer == member_id:
            self.screen_sharer = None
            self._set_live(member_id, "screen", False)
        self._spawn(self._negotiate(peer))

    def activity(self, member_id: str) -> tuple[float, float]:
        """When this member last spoke and last sent a video frame (monotonic seconds)."""
        audio = self._tracks.get((member_id, "audio"))
        video = self._tracks.get((member_id, "video"))
        return (
            audio.last_voice_at if audio is not None else 0.0,
            video.last_frame_at if video is not None else 0.0,
        )

    # Periodic work --------------------------------------------------------------------

    async def _report_loop(self) -> None:
        remb = {"video": self._settings.camera_bps, "screen": self._settings.screen_bps}
        next_report = self._now()
        while True:
            await asyncio.sleep(SPEAKER_INTERVAL_S)
            self._pick_speaker()
            self.forwarder.flush_keyframe_requests()
            now = self._now()
            if now < next_report:
                continue
            next_report = now + REPORT_INTERVAL_S
            for peer in list(self.peers.values()):
                if peer.wire is None or not peer.wire.ready:
                    continue
                tracks = [
                    t for s in SOURCES if (t := self._tracks.get((peer.member_id, s))) is not None
                ]
                compound = self.forwarder.receiver_reports(tracks, remb)
                compound += self.forwarder.sender_reports(
                    [leg for leg, _t in peer.legs.values() if leg.active]
                )
                if compound:
                    peer.wire.send_rtcp(compound)
            for peer in list(self.peers.values()):
                if peer.negotiating and now - peer.offered_at > ANSWER_TIMEOUT_S:
                    log.warning("media.answer_timeout", room_id=self.room_id)
                    self._spawn(self._negotiate(peer))

    def _pick_speaker(self) -> None:
        now = self._now()
        loudest: tuple[float, str] | None = None
        for (owner, source), track in self._tracks.items():
            if source != "audio" or track.blocked or now - track.last_voice_at > 0.5:
                continue
            if track.level >= SPEAKER_MIN_LEVEL and (loudest is None or track.level > loudest[0]):
                loudest = (track.level, owner)
        if loudest is not None and loudest[1] != self._speaker:
            self._speaker = loudest[1]
            if self._on_speaker is not None:
                self._on_speaker(loudest[1])


class _NoSink:
    """A leg or track whose connection is not up yet: packets are dropped."""

    target: fanout.Target | None = None

    def refresh_target(self) -> fanout.Target | None:
        return None

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        return False

    def send_rtcp(self, packet: bytes) -> bool:
        return False
