"""The forwarding plane: publishers' tracks, subscribers' legs, and RTCP per leg.

Everything here runs synchronously inside the ICE datagram callback (see hooks.Wire):
a packet arrives decrypted, each leg's numbering is worked out here, and one fan-out call
(rooms/media/fanout.py) rewrites, encrypts and sends every leg's copy; nothing waits.
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

from rooms.media import fanout, rtp
from rooms.media.packetmap import SEQ_MOD, PacketMap

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
# Only needed until the receiver has tied the SSRC to its m-line (RFC 8843 section 9.2).
DEMUX_URIS = frozenset((MID_URI, RID_URI, REPAIRED_RID_URI))
MAX_LAYOUTS = 64  # extension layouts whose plans a track keeps
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
KEYFRAME_INTERVAL_S = 0.5  # at most one keyframe request per publisher track per 500 ms
CACHE_SIZE = 256  # video packets kept per track for retransmission (~3 s at 500 kbps)
# A packet asked of the publisher is not asked again sooner than this (about a round trip
# on a home connection), however many subscribers NACK it meanwhile.
NACK_REPEAT_S = 0.1
ASKED_KEPT_S = 2.0  # who waits for a packet asked of the publisher, kept this long
MAX_ASKED = 512


class Sink(Protocol):
    """Where a leg's packets go: a peer connection's encrypted wire."""

    # Where the fan-out sends (None until the connection is up, or after it changed).
    target: fanout.Target | None

    def refresh_target(self) -> fanout.Target | None:
        """Work `target` out again; None while nothing can be sent."""
        ...

    def send_rtp(self, packet: bytes | bytearray) -> bool: ...

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
    # The subscriber's receiver reports cover this leg's SSRC: it knows the m-line, so
    # MID and RID are no longer sent (as Chromium's senders do); a renegotiation that
    # changes the leg sends them again.
    demuxed: bool = False
    map: PacketMap = field(init=False)
    packets: int = 0
    octets: int = 0

    def __post_init__(self) -> None:
        self.map = PacketMap(self.clock_rate)

    @property
    def active(self) -> bool:
        """Packets flow on this leg."""
        return self.negotiated and self.wanted

    def plan(self, track: Track, view: rtp.RtpView) -> bytes | None:
        """The in-place extension edits for the publisher's packets with this layout."""
        out_ids: dict[int, int | None] = {}
        values: dict[int, bytes] = {}
        for uri, pid in track.ext_ids.items():
            if self.demuxed and uri in DEMUX_URIS:
                continue
            out_ids[pid] = self.ext_ids.get(uri)
            if uri == MID_URI:
                if not self.mid:
                    out_ids[pid] = None
                values[pid] = self.mid.encode()
        return rtp.inplace_plan(view, out_ids, values)

    def rebuilt_extensions(self, track: Track, view: rtp.RtpView) -> bytes:
        """The leg's extension block, for a packet the plan cannot edit in place."""
        elements: list[tuple[int, bytes]] = []
        uris = {pid: uri for uri, pid in track.ext_ids.items()}
        for ext_id, value in view.extensions:
            uri = uris.get(ext_id)
            out_id = self.ext_ids.get(uri) if uri is not None else None
            if out_id is None or (self.demuxed and uri in DEMUX_URIS):
                continue
            elements.append((out_id, self.mid.encode() if uri == MID_URI else value))
        return rtp.extension_block(elements)


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
    # Source sequence asked of the publisher -> (when last asked, the legs waiting for it,
    # whether the server had forwarded it before): a retransmission of a packet everyone
    # had goes to the legs that asked only, not to every subscriber again.
    asked: dict[int, tuple[float, set[Leg], bool]] = field(default_factory=dict)
    # Extension layout -> each leg's plan (None: rebuild). Cleared when ext_ids is
    # replaced or a leg changes (Forwarder.leg_changed).
    plans: dict[tuple[tuple[int, int, int], ...], dict[Leg, bytes | None]] = field(
        default_factory=dict
    )
    plans_for: object = None

    def remember(self, sequence: int, packet: bytes) -> None:
        """Keep a video packet for retransmission to any leg that NACKs it."""
        if not self.cache:
            self.cache = [None] * CACHE_SIZE
        self.cache[sequence % CACHE_SIZE] = packet

    def holds(self, data: bytes, sequence: int) -> bool:
        """This packet (same SSRC and sequence) is in the cache: it was forwarded already."""
        packet = self.recall(sequence)
        return packet is not None and packet[8:12] == data[8:12]

    def recall(self, sequence: int) -> bytes | None:
        """The cached packet with this source sequence number, if still held."""
        if not self.cache:
            return None
        packet = self.cache[sequence % CACHE_SIZE]
        if packet is None or int.from_bytes(packet[2:4], "big") != sequence:
            return None
        return packet


SPEAKING_LEVEL = 127 - 50  # -50 dBov or louder counts as voice
_UNPLANNED = b"unplanned"  # a plans.get default that no plan can equal by identity


class Forwarder:
    """Routes decrypted packets of one room between its tracks and legs."""

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        fanout_with: fanout.Forward | None = None,
    ) -> None:
        self._now = monotonic
        self._fanout = fanout_with if fanout_with is not None else fanout.current()[1]
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
            if track.holds(data, view.sequence):
                return  # a second retransmission of a packet already forwarded
            track.remember(view.sequence, data)
            if view.marker:
                track.last_frame_at = now
        if track.blocked:
            return
        payload_octets = len(data) - view.ext_end
        marker = data[1] & 0x80
        ssrc, source_seq, source_ts = view.ssrc, view.sequence, view.timestamp
        if track.plans_for is not track.ext_ids or len(track.plans) > MAX_LAYOUTS:
            track.plans.clear()
            track.plans_for = track.ext_ids
        plans = track.plans.get(view.layout)
        if plans is None:
            plans = track.plans[view.layout] = {}
        entries: list[fanout.Entry] = []
        sending: list[Leg] = []
        # The per-leg loop is the hot path (once per packet per subscriber): kept inline.
        legs = track.legs
        if track.asked:
            waiting = track.asked.pop(source_seq, None)
            if waiting is not None and waiting[2]:
                legs = [leg for leg in legs if leg in waiting[1]]
        for leg in legs:
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
            plan = plans.get(leg, _UNPLANNED)
            if plan is _UNPLANNED:
                plan = plans[leg] = leg.plan(track, view)
            if plan is None:
                self._send_rebuilt(track, leg, data, view, pt, sequence, timestamp)
                continue
            target = leg.sink.target
            if target is None:
                target = leg.sink.refresh_target()
                if target is None:
                    continue
            entries.append((target, marker | pt, sequence, timestamp, leg.ssrc, plan))
            sending.append(leg)
        if not entries:
            return
        sent = self._fanout(data, entries)
        if sent == (1 << len(entries)) - 1:
            for leg in sending:
                leg.packets += 1
                leg.octets += payload_octets
            self.forwarded += len(entries)
            return
        for leg in sending:
            if sent & 1:
                leg.packets += 1
                leg.octets += payload_octets
                self.forwarded += 1
            sent >>= 1

    def _send_rebuilt(
        self,
        track: Track,
        leg: Leg,
        data: bytes,
        view: rtp.RtpView,
        pt: int,
        sequence: int,
        timestamp: int,
    ) -> None:
        # A leg whose extensions cannot be edited in place (its MID is longer than the
        # publisher's): a new packet, the old way.
        packet = rtp.rewrite(
            data,
            view,
            payload_type=pt,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=leg.ssrc,
            extensions=leg.rebuilt_extensions(track, view),
        )
        if leg.sink.send_rtp(packet):
            leg.packets += 1
            leg.octets += len(data) - view.ext_end
            self.forwarded += 1

    def leg_changed(self, leg: Leg) -> None:
        """A leg's extension ids, MID or demux state changed: its plans are made again."""
        if leg.track is not None:
            leg.track.plans.clear()

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
            if isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                for block in packet.reports:
                    leg = self.legs.get((subscriber, block.ssrc))
                    if leg is not None and not leg.demuxed:
                        leg.demuxed = True
                        self.leg_changed(leg)
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
        now = self._now()
        # The RTCP parser adds bitmask offsets without wrapping (65535 + 1 is 65536), and a
        # receiver may list a sequence twice: answer each 16-bit sequence once.
        for leg_seq in dict.fromkeys(seq % SEQ_MOD for seq in lost):
            source_seq = leg.map.source_sequence(leg_seq)
            packet = track.recall(source_seq) if source_seq is not None else None
            if packet is None:
                if source_seq is not None and self._waits_for(track, leg, source_seq, now):
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

    def _waits_for(self, track: Track, leg: Leg, source_seq: int, now: float) -> bool:
        """Note that `leg` waits for a packet the cache lacks; True: ask the publisher now."""
        asked = track.asked
        while asked:
            oldest = next(iter(asked))
            if len(asked) < MAX_ASKED and now - asked[oldest][0] < ASKED_KEPT_S:
                break
            del asked[oldest]
        entry = asked.get(source_seq)
        if entry is None:
            # Older than the cache holds: forwarded before, so only those who ask lack it.
            # Newer: it never reached the server, and whoever has not asked lacks it too.
            age = (track.max_seq - source_seq) % SEQ_MOD
            asked[source_seq] = (now, {leg}, CACHE_SIZE <= age < SEQ_MOD // 2)
            return True
        when, legs, had_it = entry
        legs.add(leg)
        if now - when < NACK_REPEAT_S:
            return False
        asked[source_seq] = (now, legs, had_it)
        return True

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
