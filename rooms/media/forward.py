"""The forwarding plane: publishers' tracks, subscribers' legs, and RTCP per leg.

Everything here runs synchronously inside the ICE datagram callback (see hooks.Wire):
a packet arrives decrypted, is rewritten once per leg and sent, and nothing waits.
No decoder, encoder or per-frame task exists on this path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
)

from rooms.media import rtp
from rooms.media.packetmap import SEQ_MOD, PacketMap

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
KEYFRAME_INTERVAL_S = 0.5  # at most one keyframe request per publisher track per 500 ms
CACHE_SIZE = 256  # video packets kept per track for retransmission (~3 s at 500 kbps)


class Sink(Protocol):
    """Where a leg's packets go: a peer connection's encrypted wire."""

    def send_rtp(self, packet: bytes | bytearray) -> bool: ...

    def forward_rtp(
        self, packet: bytes, marker_pt: int, sequence: int, timestamp: int, ssrc: int
    ) -> bool:
        """Send `packet` with header bytes 1-11 (marker and payload type, sequence number,
        timestamp, SSRC) replaced: the rewrite of a packet whose extensions stay as they are."""
        ...

    def send_rtcp(self, packet: bytes) -> bool: ...


@dataclass(slots=True)
class SenderReport:
    """The publisher's latest sender report: its NTP <-> RTP mapping at arrival."""

    ntp: int
    rtp_ts: int
    arrived: float  # monotonic


@dataclass(slots=True, eq=False)
class Leg:
    """One m-line on a subscriber's peer connection carrying one publisher's track."""

    owner: str  # the publisher's member id
    source: str  # audio | video | screen
    subscriber: str  # the subscriber's member id
    sink: Sink
    ssrc: int
    clock_rate: int
    mid: str = ""
    payload_types: dict[str, int] = field(default_factory=dict)  # mime -> leg's PT
    ext_ids: dict[str, int] = field(default_factory=dict)  # uri -> leg's id
    negotiated: bool = False  # the subscriber's answer accepted this m-line
    # The subscriber has not asked for a keyframe on this leg since it (re)started. The
    # keyframe requested when the server's side of DTLS completes often reaches the
    # browser before its own side has the SRTP keys and is lost; the browser's first PLI
    # says it can decrypt now, so that one goes out at once, past the rate limit.
    first_request_owed: bool = True
    wanted: bool = True  # the subscriber wants it (audio-only mode turns video off)
    track: Track | None = None  # the publisher's track feeding it, while there is one
    map: PacketMap = field(init=False)
    packets: int = 0
    octets: int = 0
    _remap_for: object = None
    _remap: dict[int, int] | None = None
    _mid_bytes: bytes = b""

    def __post_init__(self) -> None:
        self.map = PacketMap(self.clock_rate)

    @property
    def active(self) -> bool:
        """Packets flow on this leg."""
        return self.negotiated and self.wanted

    def extension_map(self, track: Track) -> dict[int, int] | None:
        """Publisher extension id -> leg id; None when they are the same (nothing to do)."""
        if self._remap_for is not track.ext_ids:
            remap = {
                pid: self.ext_ids[uri] for uri, pid in track.ext_ids.items() if uri in self.ext_ids
            }
            identical = all(k == v for k, v in remap.items()) and len(remap) == len(track.ext_ids)
            self._remap = None if identical else remap
            self._remap_for = track.ext_ids
            self._mid_bytes = self.mid.encode()
        return self._remap


@dataclass(slots=True, eq=False)
class Track:
    """A publisher's incoming stream (camera, microphone or screen)."""

    owner: str
    source: str
    kind: str
    sink: Sink  # the publisher's own wire, for RTCP back to it
    ssrc: int | None = None
    clock_rate: int = 90000
    mimes: dict[int, str] = field(default_factory=dict)  # publisher PT -> mime
    ext_ids: dict[str, int] = field(default_factory=dict)
    legs: list[Leg] = field(default_factory=list)  # active legs only, kept by the router
    blocked: bool = False  # a host stopped this member's audio/video: not forwarded
    # receive statistics (RFC 3550 appendix A.1, A.8)
    received: int = 0
    base_seq: int | None = None
    max_seq: int = 0
    cycles: int = 0
    jitter: float = 0.0
    last_transit: float | None = None
    expected_prior: int = 0
    received_prior: int = 0
    report: SenderReport | None = None
    last_packet_at: float = 0.0
    last_frame_at: float = 0.0  # video: a packet ending a frame (marker bit)
    last_voice_at: float = 0.0  # audio: a level above the speaking threshold
    level: float = 0.0  # smoothed loudness, 0 (silence) .. 127
    last_keyframe_request: float = -1.0
    cache: list[bytes | None] = field(default_factory=list)

    def remember(self, sequence: int, packet: bytes) -> None:
        """Keep a video packet for retransmission to any leg that NACKs it."""
        if not self.cache:
            self.cache = [None] * CACHE_SIZE
        self.cache[sequence % CACHE_SIZE] = packet

    def recall(self, sequence: int) -> bytes | None:
        """The cached packet with this source sequence number, if still held."""
        if not self.cache:
            return None
        packet = self.cache[sequence % CACHE_SIZE]
        if packet is None or int.from_bytes(packet[2:4], "big") != sequence:
            return None
        return packet


SPEAKING_LEVEL = 127 - 50  # -50 dBov or louder counts as voice


class Forwarder:
    """Routes decrypted packets of one room between its tracks and legs."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self.tracks: dict[int, Track] = {}  # by publisher SSRC
        self.legs: dict[tuple[str, int], Leg] = {}  # (subscriber, leg SSRC) -> leg
        self.forwarded = 0
        self.keyframe_requests = 0
        self.retransmitted = 0
        self.keyframe_pending: set[Track] = set()
        self._keyframe_later: list[tuple[float, Track]] = []

    # Packets from publishers ---------------------------------------------------------

    def on_rtp(self, track: Track, data: bytes) -> None:
        """One decrypted packet from a publisher: account for it, fan it out."""
        try:
            view = rtp.parse(data)
        except rtp.RtpError:
            return
        now = self._now()
        self._account(track, view, now)
        mime = track.mimes.get(view.payload_type)
        if mime is None:
            return
        if track.kind == "audio":
            level_id = track.ext_ids.get(AUDIO_LEVEL_URI)
            if level_id is not None:
                level = rtp.audio_level(view, level_id)
                if level is not None:
                    loud = 127 - level
                    track.level += (loud - track.level) * 0.3
                    if loud >= SPEAKING_LEVEL:
                        track.last_voice_at = now
        else:
            track.remember(view.sequence, data)
            if view.marker:
                track.last_frame_at = now
        if track.blocked:
            return
        payload_octets = len(data) - view.ext_end
        mid_id = track.ext_ids.get(MID_URI)
        carries_mid = mid_id is not None and any(i == mid_id for i, _ in view.extensions)
        marker = data[1] & 0x80
        ssrc, source_seq, source_ts = view.ssrc, view.sequence, view.timestamp
        # The per-leg loop is the hot path (once per packet per subscriber): kept inline.
        for leg in track.legs:
            pt = leg.payload_types.get(mime)
            if pt is None:
                continue  # the subscriber did not accept this codec: never transcoded
            # PacketMap.map's in-order case, inlined (the call is a tenth of the loop).
            m = leg.map
            highest = m.highest_in
            if (
                m.source == ssrc
                and highest is not None
                and not m.gated
                and 0 < (source_seq - highest) & 0xFFFF < 0x8000
            ):
                sequence = (source_seq + m.seq_offset) & 0xFFFF
                timestamp = (source_ts + m.ts_offset) & 0xFFFFFFFF
                m.highest_in = source_seq
                m.last_seq = sequence
                m.last_ts = timestamp
                m.last_sent_at = now
            else:
                sequence, timestamp = m.map(ssrc, source_seq, source_ts, now)
            remap = leg._remap if leg._remap_for is track.ext_ids else leg.extension_map(track)
            if remap is None and not carries_mid:
                # The common case: only the fixed header changes, written by the sink as
                # it copies the packet into its encryption buffer.
                sent = leg.sink.forward_rtp(data, marker | pt, sequence, timestamp, leg.ssrc)
            else:
                elements: list[tuple[int, bytes]] = []
                for ext_id, value in view.extensions:
                    out_id = ext_id if remap is None else remap.get(ext_id)
                    if out_id is not None:
                        elements.append((out_id, leg._mid_bytes if ext_id == mid_id else value))
                packet = rtp.rewrite(
                    data,
                    view,
                    payload_type=pt,
                    sequence=sequence,
                    timestamp=timestamp,
                    ssrc=leg.ssrc,
                    extensions=rtp.extension_block(elements),
                )
                sent = leg.sink.send_rtp(packet)
            if sent:
                leg.packets += 1
                leg.octets += payload_octets
                self.forwarded += 1

    def _account(self, track: Track, view: rtp.RtpView, now: float) -> None:
        seq = view.sequence
        if track.ssrc != view.ssrc or track.base_seq is None:
            track.ssrc = view.ssrc
            track.base_seq = seq
            track.max_seq = seq
            track.cycles = 0
            track.received = 0
            track.expected_prior = track.received_prior = 0
            track.last_transit = None
            track.jitter = 0.0
        elif 0 < (seq - track.max_seq) % SEQ_MOD < SEQ_MOD // 2:
            if seq < track.max_seq:
                track.cycles += SEQ_MOD
            track.max_seq = seq
        track.received += 1
        track.last_packet_at = now
        transit = now * track.clock_rate - view.timestamp
        if track.last_transit is not None:
            delta = abs(transit - track.last_transit)
            if delta < track.clock_rate:  # ignore timestamp jumps (new talkspurt, rebase)
                track.jitter += (delta - track.jitter) / 16
        track.last_transit = transit

    # RTCP from publishers and subscribers ------------------------------------------------

    def on_rtcp(
        self,
        subscriber: str,
        data: bytes,
        tracks_by_ssrc: dict[int, Track],
    ) -> None:
        """RTCP arriving on one member's connection: their SRs, and feedback on our legs."""
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        now = self._now()
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                track = tracks_by_ssrc.get(packet.ssrc)
                if track is not None:
                    track.report = SenderReport(
                        packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp, now
                    )
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (
                RTCP_PSFB_PLI,
                RTCP_PSFB_FIR,
            ):
                leg = self.legs.get((subscriber, packet.media_ssrc))
                if leg is not None:
                    urgent, leg.first_request_owed = leg.first_request_owed, False
                    self.request_keyframe(self._track_of(leg), urgent=urgent)
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                leg = self.legs.get((subscriber, packet.media_ssrc))
                if leg is not None:
                    self._answer_nack(leg, packet.lost)

    def _track_of(self, leg: Leg) -> Track | None:
        return leg.track

    def _answer_nack(self, leg: Leg, lost: list[int]) -> None:
        track = self._track_of(leg)
        if track is None or track.ssrc is None or leg.map.source != track.ssrc:
            return
        missing: list[int] = []
        # The RTCP parser adds bitmask offsets without wrapping (65535 + 1 is 65536), and a
        # receiver may list a sequence twice: answer each 16-bit sequence once.
        for leg_seq in dict.fromkeys(seq % SEQ_MOD for seq in lost):
            source_seq = leg.map.source_sequence(leg_seq)
            packet = track.recall(source_seq) if source_seq is not None else None
            if packet is None:
                if source_seq is not None:
                    missing.append(source_seq)
                continue
            mime = track.mimes.get(packet[1] & 0x7F)
            pt = leg.payload_types.get(mime or "")
            if pt is None:
                continue
            view = rtp.parse(packet)
            out = rtp.rewrite(
                packet,
                view,
                payload_type=pt,
                sequence=leg_seq,
                timestamp=(view.timestamp + leg.map.ts_offset) % (1 << 32),
                ssrc=leg.ssrc,
                extensions=b"",
            )
            if leg.sink.send_rtp(out):
                self.retransmitted += 1
        if missing:
            # Not held any more: the publisher may still have it.
            nack = RtcpRtpfbPacket(
                fmt=RTCP_RTPFB_NACK, ssrc=leg.ssrc, media_ssrc=track.ssrc, lost=sorted(missing)
            )
            track.sink.send_rtcp(bytes(nack))

    def request_keyframe(self, track: Track | None, *, urgent: bool = False) -> bool:
        """Ask a video publisher for a keyframe, at most once per 500 ms unless urgent."""
        if track is None or track.kind != "video" or track.ssrc is None:
            return False
        now = self._now()
        if not urgent and now - track.last_keyframe_request < KEYFRAME_INTERVAL_S:
            # Not dropped: a newcomer still needs it, so it goes out when the window ends.
            self.keyframe_pending.add(track)
            return False
        track.last_keyframe_request = now
        self.keyframe_pending.discard(track)
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=track.ssrc)
        if track.sink.send_rtcp(bytes(pli)):
            self.keyframe_requests += 1
            return True
        return False

    def request_keyframe_later(self, track: Track | None, delay_s: float) -> None:
        """Ask again after a moment: a keyframe that reached a leg before the
        subscriber's receiver was ready is lost, and not every receiver asks again."""
        if track is not None:
            self._keyframe_later.append((self._now() + delay_s, track))

    def flush_keyframe_requests(self) -> None:
        """Send the requests that the rate limit held back, once their window is over."""
        now = self._now()
        due = [t for at, t in self._keyframe_later if at <= now]
        self._keyframe_later = [(at, t) for at, t in self._keyframe_later if at > now]
        self.keyframe_pending.update(due)
        for track in list(self.keyframe_pending):
            self.request_keyframe(track)

    # Periodic reports ---------------------------------------------------------------

    def sender_reports(self, legs: list[Leg]) -> bytes:
        """Compound SRs for a subscriber's active legs, on each publisher's NTP timeline.

        Mapping the leg's timestamps through the publisher's own SR keeps that
        publisher's audio and video in sync at the subscriber (RFC 3550 section 6.4.1).
        """
        now = self._now()
        out = bytearray()
        for leg in legs:
            track = self._track_of(leg)
            if track is None or track.report is None or leg.packets == 0:
                continue
            report = track.report
            elapsed = now - report.arrived
            ntp = report.ntp + int(elapsed * (1 << 32))
            rtp_ts = (report.rtp_ts + int(elapsed * track.clock_rate) + leg.map.ts_offset) % (
                1 << 32
            )
            sr = RtcpSrPacket(
                ssrc=leg.ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp_ts,
                    packet_count=leg.packets & 0xFFFFFFFF,
                    octet_count=leg.octets & 0xFFFFFFFF,
                ),
            )
            out += bytes(sr)
        return bytes(out)

    def receiver_reports(self, tracks: list[Track], remb_bps: dict[str, int]) -> bytes:
        """RRs for a publisher's tracks, and a REMB capping each video track's bitrate."""
        now = self._now()
        reports: list[RtcpReceiverInfo] = []
        out = bytearray()
        for track in tracks:
            if track.ssrc is None or track.base_seq is None:
                continue
            extended = track.cycles + track.max_seq
            expected = extended - track.base_seq + 1
            lost = max(0, expected - track.received)
            expected_interval = expected - track.expected_prior
            received_interval = track.received - track.received_prior
            track.expected_prior, track.received_prior = expected, track.received
            lost_interval = expected_interval - received_interval
            fraction = (
                (lost_interval << 8) // expected_interval
                if expected_interval > 0 and lost_interval > 0
                else 0
            )
            lsr = dlsr = 0
            if track.report is not None:
                lsr = (track.report.ntp >> 16) & 0xFFFFFFFF
                dlsr = int((now - track.report.arrived) * 65536)
            reports.append(
                RtcpReceiverInfo(
                    ssrc=track.ssrc,
                    fraction_lost=min(fraction, 255),
                    packets_lost=min(lost, 0x7FFFFF),
                    highest_sequence=extended & 0xFFFFFFFF,
                    jitter=int(track.jitter),
                    lsr=lsr,
                    dlsr=dlsr,
                )
            )
            cap = remb_bps.get(track.source)
            if track.kind == "video" and cap:
                remb = RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP,
                    ssrc=1,
                    media_ssrc=0,
                    fci=pack_remb_fci(cap, [track.ssrc]),
                )
                out += bytes(remb)
        if reports:
            # An RR holds at most 31 report blocks (5-bit count).
            for start in range(0, len(reports), 31):
                rr = RtcpRrPacket(ssrc=1, reports=reports[start : start + 31])
                out[0:0] = bytes(rr)
        return bytes(out)
