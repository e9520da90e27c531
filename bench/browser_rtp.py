"""What a Chromium peer sends besides media: RTCP both ways, MID until acknowledged, NACK/PLI.

The SFU benchmark's "browser" peers use this so the server is measured on the traffic a
browser makes, not on bare media:

- a sender report (RFC 3550 6.4.1) with an SDES CNAME for each outgoing stream, about once
  a second (Chromium's video interval; randomised to 0.5-1.5x as RFC 3550 6.3.5 asks);
- a receiver report for each received stream about once a second, reporter SSRC the
  peer's own sending SSRC of that kind (Chromium's `local_ssrc` of a receive stream);
- a generic NACK (RFC 4585 6.2.1) as soon as a video sequence gap is seen, repeated
  once per round trip (from the server's reports on our SRs; 100 ms before there is
  one) until the packet comes or the request is given up (10 times or 1 s), then a PLI
  (RFC 4585 6.3.1) as the decoder would ask; a PLI also at the start of every received video stream;
- REMB (draft-alvestrand-rmcat-remb) once a second for the received video streams (the
  offer negotiates goog-remb, not transport-cc);
- the MID header extension (RFC 8843 15) on each outgoing packet until a report block
  from the server covers that SSRC, then no more (Chromium's `ssrc_has_acked`); the
  audio level (RFC 6464) on every audio packet and abs-send-time on every video packet;
- NACKs for its own video answered from the last second of sent packets (same SSRC and
  sequence number, abs-send-time stamped anew: the benchmark's peers negotiate no RTX),
  at most at the stream's own bitrate, and a PLI answered with a keyframe by restarting
  the pre-encoded loop at its keyframe.

Everything is built and parsed with `struct` on bytes, not with aiortc's packet
classes, so the unit test can check one against the other.
"""

from __future__ import annotations

import random
import struct
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rooms.media import rtp
from rooms.media.forward import AUDIO_LEVEL_URI, MID_URI

ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_APP, RTCP_RTPFB, RTCP_PSFB = (
    200,
    201,
    202,
    203,
    204,
    205,
    206,
)
FMT_NACK = 1
FMT_PLI, FMT_FIR, FMT_AFB = 1, 4, 15
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

REPORT_INTERVAL_S = 1.0
REMB_INTERVAL_S = 1.0
REMB_BPS = 2_500_000  # what an unconstrained loopback estimate settles near
NACK_RETRY_S = 0.1  # Chromium's retry interval before there is an RTT estimate
NACK_RETRY_MIN_S = 0.02  # the tick that looks for due retries runs every 50 ms anyway
NACK_MAX_RETRIES = 10  # Chromium's kMaxNackRetries
NACK_MAX_AGE_S = 1.0
NACK_LIST_MAX = 1000  # Chromium's kMaxNackPackets: beyond this, ask for a keyframe
KEYFRAME_REQUEST_INTERVAL_S = 0.5
HISTORY_S = 1.0  # how long sent video stays retransmittable (Chromium's minimum, 1 s)
# Chromium limits retransmissions to the stream's own bitrate (RTPSender's rate limiter):
# each byte sent adds a byte of budget, kept up to about a second of 500 kbps video.
RETRANSMIT_BUDGET_MAX = 64_000

_HEADER = struct.Struct("!BBHII")
_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IIIII")


class RtcpError(ValueError):
    """A datagram that is not well-formed RTCP."""


# RTCP packets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int  # of 256, since the previous report
    packets_lost: int  # cumulative
    highest_sequence: int  # extended (cycles << 16 | sequence)
    jitter: int  # in the stream's clock units
    lsr: int  # middle 32 bits of the last SR's NTP time
    dlsr: int  # 1/65536 s since that SR arrived


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    blocks: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    blocks: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class Sdes:
    cnames: tuple[tuple[int, str], ...]  # (ssrc, CNAME)


@dataclass(frozen=True, slots=True)
class Nack:
    ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]  # 16-bit sequence numbers


@dataclass(frozen=True, slots=True)
class Pli:
    ssrc: int
    media_ssrc: int


@dataclass(frozen=True, slots=True)
class Fir:
    ssrc: int
    media_ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Remb:
    ssrc: int
    bitrate: int
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OtherRtcp:
    packet_type: int
    fmt: int


Rtcp = SenderReport | ReceiverReport | Sdes | Nack | Pli | Fir | Remb | OtherRtcp
KIND_NAMES: dict[type, str] = {
    SenderReport: "sr",
    ReceiverReport: "rr",
    Sdes: "sdes",
    Nack: "nack",
    Pli: "pli",
    Fir: "fir",
    Remb: "remb",
    OtherRtcp: "other",
}


def ntp_time(wall: float) -> int:
    """A Unix time as a 64-bit NTP timestamp (32.32 fixed point since 1900)."""
    return int((wall + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_to_wall(ntp: int) -> float:
    """The Unix time of a 64-bit NTP timestamp."""
    return ntp / (1 << 32) - NTP_EPOCH_OFFSET


def _header(count: int, packet_type: int, body_len: int) -> bytes:
    if body_len % 4:
        raise RtcpError("RTCP bodies are whole 32-bit words")
    return struct.pack("!BBH", 0x80 | count, packet_type, body_len // 4)


def _blocks(blocks: Iterable[ReportBlock]) -> bytes:
    out = bytearray()
    for b in blocks:
        lost = max(-(1 << 23), min(b.packets_lost, (1 << 23) - 1)) & 0xFFFFFF
        out += _BLOCK.pack(
            b.ssrc,
            min(max(b.fraction_lost, 0), 255),
            lost.to_bytes(3, "big"),
            b.highest_sequence & 0xFFFFFFFF,
            b.jitter & 0xFFFFFFFF,
            b.lsr & 0xFFFFFFFF,
            b.dlsr & 0xFFFFFFFF,
        )
    return bytes(out)


def build_sender_report(report: SenderReport) -> bytes:
    """An SR packet (at most 31 report blocks)."""
    if len(report.blocks) > 31:
        raise RtcpError("an SR holds at most 31 report blocks")
    body = struct.pack("!I", report.ssrc) + _SR_INFO.pack(
        report.ntp >> 32,
        report.ntp & 0xFFFFFFFF,
        report.rtp_timestamp & 0xFFFFFFFF,
        report.packet_count & 0xFFFFFFFF,
        report.octet_count & 0xFFFFFFFF,
    )
    body += _blocks(report.blocks)
    return _header(len(report.blocks), RTCP_SR, len(body)) + body


def build_receiver_report(report: ReceiverReport) -> bytes:
    """An RR packet (at most 31 report blocks)."""
    if len(report.blocks) > 31:
        raise RtcpError("an RR holds at most 31 report blocks")
    body = struct.pack("!I", report.ssrc) + _blocks(report.blocks)
    return _header(len(report.blocks), RTCP_RR, len(body)) + body


def build_sdes(cnames: Iterable[tuple[int, str]]) -> bytes:
    """An SDES packet with one CNAME item per chunk."""
    chunks = bytearray()
    count = 0
    for ssrc, cname in cnames:
        text = cname.encode()[:255]
        chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text
        chunk += b"\x00" * (4 - len(chunk) % 4)  # the list's terminating null, then padding
        chunks += chunk
        count += 1
    return _header(count, RTCP_SDES, len(chunks)) + bytes(chunks)


def build_nack(ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """A generic NACK; `lost` in arrival order may cross the 16-bit wrap."""
    fci = bytearray()
    pid: int | None = None
    blp = 0
    for seq in lost:
        seq &= 0xFFFF
        if pid is not None:
            gap = (seq - pid) & 0xFFFF
            if 0 < gap <= 16:
                blp |= 1 << (gap - 1)
                continue
            fci += struct.pack("!HH", pid, blp)
        pid, blp = seq, 0
    if pid is None:
        raise RtcpError("a NACK names at least one packet")
    fci += struct.pack("!HH", pid, blp)
    body = struct.pack("!II", ssrc, media_ssrc) + fci
    return _feedback(FMT_NACK, RTCP_RTPFB, body)


def _feedback(fmt: int, packet_type: int, body: bytes) -> bytes:
    return struct.pack("!BBH", 0x80 | fmt, packet_type, len(body) // 4) + body


def build_pli(ssrc: int, media_ssrc: int) -> bytes:
    """A picture loss indication."""
    return _feedback(FMT_PLI, RTCP_PSFB, struct.pack("!II", ssrc, media_ssrc))


def build_remb(ssrc: int, bitrate: int, ssrcs: Iterable[int]) -> bytes:
    """A receiver estimated maximum bitrate for these streams."""
    targets = list(ssrcs)
    exponent = 0
    mantissa = bitrate
    while mantissa >= 1 << 18:
        mantissa >>= 1
        exponent += 1
    body = struct.pack("!II", ssrc, 0) + b"REMB"
    body += struct.pack("!I", (len(targets) << 24) | (exponent << 18) | mantissa)
    body += b"".join(struct.pack("!I", s) for s in targets)
    return _feedback(FMT_AFB, RTCP_PSFB, body)


def _read_blocks(data: bytes, pos: int, count: int) -> tuple[ReportBlock, ...]:
    out = []
    for _ in range(count):
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        out.append(ReportBlock(ssrc, fraction, packets_lost, highest, jitter, lsr, dlsr))
        pos += 24
    return tuple(out)


def parse_rtcp(data: bytes) -> list[Rtcp]:
    """Every packet of a (compound) RTCP datagram."""
    out: list[Rtcp] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtcpError("truncated RTCP header")
        first, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise RtcpError("not RTCP version 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtcpError("RTCP packet longer than its datagram")
        count = first & 0x1F
        body = data[pos + 4 : end]
        if first & 0x20 and body:  # padding: its count is the last byte
            body = body[: len(body) - body[-1]]
        try:
            out.append(_parse_one(packet_type, count, body))
        except struct.error as exc:
            raise RtcpError(f"truncated RTCP packet type {packet_type}") from exc
        pos = end
    return out


def _parse_one(packet_type: int, count: int, body: bytes) -> Rtcp:
    if packet_type == RTCP_SR:
        ssrc, ntp_hi, ntp_lo, rtp_ts, packets, octets = struct.unpack_from("!IIIIII", body)
        blocks = _read_blocks(body, 24, count)
        return SenderReport(ssrc, (ntp_hi << 32) | ntp_lo, rtp_ts, packets, octets, blocks)
    if packet_type == RTCP_RR:
        (ssrc,) = struct.unpack_from("!I", body)
        return ReceiverReport(ssrc, _read_blocks(body, 4, count))
    if packet_type == RTCP_SDES:
        return Sdes(tuple(_read_sdes(body, count)))
    if packet_type == RTCP_RTPFB and count == FMT_NACK:
        ssrc, media = struct.unpack_from("!II", body)
        lost: list[int] = []
        for pos in range(8, len(body) - 3, 4):
            pid, blp = struct.unpack_from("!HH", body, pos)
            lost.append(pid)
            lost.extend((pid + i + 1) & 0xFFFF for i in range(16) if blp >> i & 1)
        return Nack(ssrc, media, tuple(lost))
    if packet_type == RTCP_PSFB and count == FMT_PLI:
        return Pli(*struct.unpack_from("!II", body))
    if packet_type == RTCP_PSFB and count == FMT_FIR:
        (ssrc,) = struct.unpack_from("!I", body)
        targets = tuple(
            struct.unpack_from("!I", body, pos)[0] for pos in range(8, len(body) - 7, 8)
        )
        return Fir(ssrc, targets)
    if packet_type == RTCP_PSFB and count == FMT_AFB and body[8:12] == b"REMB":
        (ssrc,) = struct.unpack_from("!I", body)
        (word,) = struct.unpack_from("!I", body, 12)
        number = word >> 24
        bitrate = (word & 0x3FFFF) << ((word >> 18) & 0x3F)
        ssrcs = struct.unpack_from(f"!{number}I", body, 16)
        return Remb(ssrc, bitrate, tuple(ssrcs))
    return OtherRtcp(packet_type, count)


def _read_sdes(body: bytes, count: int) -> Iterable[tuple[int, str]]:
    pos = 0
    for _ in range(count):
        (ssrc,) = struct.unpack_from("!I", body, pos)
        pos += 4
        cname = ""
        while pos < len(body) and body[pos] != 0:
            item, length = body[pos], body[pos + 1]
            if item == 1:
                cname = body[pos + 2 : pos + 2 + length].decode(errors="replace")
            pos += 2 + length
        pos += 4 - pos % 4  # the terminating null and padding to the next word
        yield ssrc, cname


# RTP header extensions -----------------------------------------------------------------


def abs_send_time(wall: float) -> bytes:
    """The 24-bit 6.18 fixed-point seconds of abs-send-time."""
    return (int(wall * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


# Streams -------------------------------------------------------------------------------


@dataclass(slots=True)
class OutStream:
    """One of the peer's own streams, as Chromium's RTP sender for it behaves."""

    kind: str  # audio | video
    ssrc: int
    payload_type: int
    clock_rate: int
    mid: str
    ext_ids: dict[str, int]  # uri -> negotiated id
    cname: str
    sequence: int = field(default_factory=lambda: random.randrange(1 << 16))
    timestamp: int = field(default_factory=lambda: random.randrange(1 << 32))
    packets: int = 0
    octets: int = 0
    mid_acked: bool = False  # a report block from the far end covered this SSRC
    keyframe_wanted: bool = False  # a PLI/FIR arrived since the last keyframe
    frame: int = 0  # position in the pre-encoded loop (video)
    last_sent_wall: float | None = None
    next_report: float = 0.0
    history: OrderedDict[int, tuple[bytes, int, float]] = field(default_factory=OrderedDict)
    retransmit_budget: int = 0  # bytes

    def packetize(self, payloads: list[bytes], ts_step: int, wall: float) -> list[bytes]:
        """One frame's RTP packets: the marker on the last, extensions as negotiated."""
        self.timestamp = ts = (self.timestamp + ts_step) & 0xFFFFFFFF
        elements: list[tuple[int, bytes]] = []
        mid_id = self.ext_ids.get(MID_URI)
        if mid_id is not None and not self.mid_acked and self.mid:
            elements.append((mid_id, self.mid.encode()))
        level_id = self.ext_ids.get(AUDIO_LEVEL_URI)
        if self.kind == "audio" and level_id is not None:
            elements.append((level_id, bytes([0x80 | 30])))  # voice, -30 dBov
        abs_id = self.ext_ids.get(ABS_SEND_TIME_URI)
        if abs_id is not None:
            elements.append((abs_id, abs_send_time(wall)))
        ext = rtp.extension_block(elements)  # one-byte form: every element fits it
        # Where abs-send-time's value sits in each packet: a retransmission is stamped
        # anew, as Chromium's pacer stamps every packet it sends.
        abs_at = 16 + sum(1 + len(v) for _i, v in elements[:-1]) + 1 if abs_id is not None else 0
        first = 0x90 if ext else 0x80
        last = len(payloads) - 1
        seq = self.sequence
        out = []
        for index, payload in enumerate(payloads):
            marker = 0x80 if index == last else 0
            packet = _HEADER.pack(first, self.payload_type | marker, seq, ts, self.ssrc)
            packet += ext + payload
            out.append(packet)
            if self.kind == "video":
                self.history[seq] = (packet, abs_at, wall)
                self.retransmit_budget = min(
                    self.retransmit_budget + len(packet), RETRANSMIT_BUDGET_MAX
                )
            self.octets += len(payload)
            seq = (seq + 1) & 0xFFFF
        self.sequence = seq
        history = self.history
        while history and next(iter(history.values()))[2] < wall - HISTORY_S:
            history.popitem(last=False)
        self.packets += len(out)
        self.last_sent_wall = wall
        return out

    def next_frame(self, loop_length: int) -> int:
        """The loop position of the next video frame: back to its keyframe after a PLI."""
        if self.keyframe_wanted:
            self.keyframe_wanted = False
            self.frame = 0
        index = self.frame
        self.frame = (index + 1) % loop_length
        return index

    def sender_report(self, wall: float) -> bytes:
        """SR + SDES CNAME, the RTP time extrapolated from the last packet to `wall`."""
        rtp_ts = self.timestamp
        if self.last_sent_wall is not None:
            rtp_ts += int((wall - self.last_sent_wall) * self.clock_rate)
        report = SenderReport(self.ssrc, ntp_time(wall), rtp_ts, self.packets, self.octets)
        return build_sender_report(report) + build_sdes([(self.ssrc, self.cname)])


@dataclass(slots=True)
class InStream:
    """One received stream, with RFC 3550 appendix A.1/A.8 statistics and NACK state."""

    ssrc: int
    kind: str
    clock_rate: int
    base: int = -1
    max_seq: int = 0
    cycles: int = 0
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    last_transit: float | None = None
    sr_ntp: int | None = None  # last SR from the server for this stream
    sr_rtp: int = 0
    sr_arrived: float = 0.0
    # extended sequence -> [first NACKed at, last NACKed at, times]
    missing: dict[int, list[float]] = field(default_factory=dict)
    last_keyframe_request: float = -1e9
    next_report: float = 0.0

    def report_block(self, wall: float) -> ReportBlock:
        """The reception report as of now; starts the next interval."""
        extended = self.cycles + self.max_seq
        expected = extended - self.base + 1
        lost = expected - self.received
        expected_interval = expected - self.expected_prior
        lost_interval = expected_interval - (self.received - self.received_prior)
        self.expected_prior, self.received_prior = expected, self.received
        fraction = (
            (lost_interval << 8) // expected_interval
            if expected_interval > 0 and lost_interval > 0
            else 0
        )
        lsr = dlsr = 0
        if self.sr_ntp is not None:
            lsr = (self.sr_ntp >> 16) & 0xFFFFFFFF
            dlsr = int((wall - self.sr_arrived) * 65536)
        return ReportBlock(self.ssrc, fraction, lost, extended, int(self.jitter), lsr, dlsr)


class BrowserRtp:
    """One peer's RTP/RTCP behaviour: statistics, reports and feedback, MID-until-RR.

    `send_rtp`/`send_rtcp` put a packet on the peer's wire. Time is passed in (`wall`
    is Unix time, the clock abs-send-time and NTP use) so tests drive it.
    """

    def __init__(
        self,
        cname: str,
        send_rtp: Callable[[bytes], bool],
        send_rtcp: Callable[[bytes], bool],
    ) -> None:
        self.cname = cname
        self._send_rtp = send_rtp
        self._send_rtcp = send_rtcp
        self.out: dict[str, OutStream] = {}  # kind -> own stream
        self.ins: dict[int, InStream] = {}  # remote SSRC -> stream
        self.kinds: dict[int, str] = {}  # remote SSRC -> kind, from the offer
        self.rtcp_sent: Counter[str] = Counter()
        self.rtcp_received: Counter[str] = Counter()
        self.mid_packets = 0
        self.retransmitted = 0
        self.retransmit_refused = 0  # over the rate limit
        self.keyframes_on_request = 0
        self.next_remb = 0.0
        self.rtt: float | None = None  # seconds, from the server's reports on our SRs

    # Sending media ----------------------------------------------------------------------

    def add_stream(self, stream: OutStream) -> None:
        """Start (or renegotiate) one of the peer's own streams."""
        old = self.out.get(stream.kind)
        if old is not None and old.ssrc == stream.ssrc:
            old.payload_type, old.ext_ids, old.mid = stream.payload_type, stream.ext_ids, stream.mid
            return
        self.out[stream.kind] = stream

    def send_frame(self, kind: str, payloads: list[bytes], ts_step: int, wall: float) -> int:
        """Send one frame on a stream; the number of packets the wire took."""
        stream = self.out.get(kind)
        if stream is None:
            return 0
        with_mid = not stream.mid_acked and MID_URI in stream.ext_ids
        sent = 0
        for packet in stream.packetize(payloads, ts_step, wall):
            if self._send_rtp(packet):
                sent += 1
        if with_mid:
            self.mid_packets += sent
        return sent

    # Receiving media --------------------------------------------------------------------

    def on_rtp(self, data: bytes, wall: float) -> InStream | None:
        """Account for a received packet; NACK new gaps, PLI a new video stream."""
        ssrc = int.from_bytes(data[8:12], "big")
        seq = (data[2] << 8) | data[3]
        stream = self.ins.get(ssrc)
        if stream is None:
            kind = self.kinds.get(ssrc, "audio")
            stream = InStream(ssrc, kind, 90000 if kind == "video" else 48000)
            stream.base = seq
            stream.max_seq = seq
            stream.next_report = wall + REPORT_INTERVAL_S * random.uniform(0.5, 1.5)
            self.ins[ssrc] = stream
            if kind == "video":
                self._keyframe_request(stream, wall)
        else:
            delta = (seq - stream.max_seq) & 0xFFFF
            if delta == 0:
                pass  # a duplicate
            elif delta < 0x8000:
                if delta > 1 and stream.kind == "video":
                    self._gap(stream, stream.cycles + stream.max_seq + 1, delta - 1, wall)
                if seq < stream.max_seq:
                    stream.cycles += 1 << 16
                stream.max_seq = seq
            elif stream.missing:
                back = 0x10000 - delta  # how far behind the highest: a retransmission
                stream.missing.pop(stream.cycles + stream.max_seq - back, None)
        stream.received += 1
        ts = int.from_bytes(data[4:8], "big")
        transit = wall * stream.clock_rate - ts
        if stream.last_transit is not None:
            d = abs(transit - stream.last_transit)
            if d < stream.clock_rate:  # a timestamp jump (new talkspurt, a rebase)
                stream.jitter += (d - stream.jitter) / 16
        stream.last_transit = transit
        return stream

    def _gap(self, stream: InStream, first: int, count: int, wall: float) -> None:
        if len(stream.missing) + count > NACK_LIST_MAX:
            stream.missing.clear()
            self._keyframe_request(stream, wall)
            return
        for ext in range(first, first + count):
            stream.missing[ext] = [wall, wall, 1.0]
        self._nack(stream, list(range(first, first + count)))

    def _nack(self, stream: InStream, lost: list[int]) -> None:
        own = self.out.get("video")
        packet = build_nack(own.ssrc if own else 1, stream.ssrc, lost)
        if self._send_rtcp(packet):
            self.rtcp_sent["nack"] += 1

    def _keyframe_request(self, stream: InStream, wall: float) -> None:
        if wall - stream.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL_S:
            return
        stream.last_keyframe_request = wall
        own = self.out.get("video")
        if self._send_rtcp(build_pli(own.ssrc if own else 1, stream.ssrc)):
            self.rtcp_sent["pli"] += 1

    def audio_send_time(self, stream: InStream, data: bytes) -> float | None:
        """When the publisher sent this packet, by the server's SR for the stream."""
        if stream.sr_ntp is None:
            return None
        ts = int.from_bytes(data[4:8], "big")
        delta = ((ts - stream.sr_rtp + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        return ntp_to_wall(stream.sr_ntp) + delta / stream.clock_rate

    # RTCP --------------------------------------------------------------------------------

    def on_rtcp(self, data: bytes, wall: float) -> None:
        """Reports and feedback from the server: acknowledge MIDs, answer NACK and PLI."""
        try:
            packets = parse_rtcp(data)
        except RtcpError:
            self.rtcp_received["malformed"] += 1
            return
        for packet in packets:
            self.rtcp_received[KIND_NAMES[type(packet)]] += 1
            if isinstance(packet, SenderReport | ReceiverReport):
                self._acknowledged(packet.blocks, wall)
                if isinstance(packet, SenderReport):
                    stream = self.ins.get(packet.ssrc)
                    if stream is not None:
                        stream.sr_ntp = packet.ntp
                        stream.sr_rtp = packet.rtp_timestamp
                        stream.sr_arrived = wall
            elif isinstance(packet, Nack):
                self._retransmit(packet.media_ssrc, packet.lost, wall)
            elif isinstance(packet, Pli):
                self._keyframe(packet.media_ssrc)
            elif isinstance(packet, Fir):
                for ssrc in packet.media_ssrcs:
                    self._keyframe(ssrc)

    def _acknowledged(self, blocks: tuple[ReportBlock, ...], wall: float) -> None:
        for block in blocks:
            for stream in self.out.values():
                if stream.ssrc != block.ssrc:
                    continue
                stream.mid_acked = True
                if block.lsr:
                    # RFC 3550 6.4.1: round trip = arrival - LSR - DLSR, in 1/65536 s.
                    now = (ntp_time(wall) >> 16) & 0xFFFFFFFF
                    rtt = ((now - block.lsr - block.dlsr) & 0xFFFFFFFF) / 65536
                    if rtt < 10.0:
                        self.rtt = rtt

    def _retransmit(self, ssrc: int, lost: tuple[int, ...], wall: float) -> None:
        for stream in self.out.values():
            if stream.ssrc != ssrc:
                continue
            for seq in lost:
                kept = stream.history.get(seq)
                if kept is None:
                    continue
                packet, abs_at, _sent = kept
                if stream.retransmit_budget < len(packet):
                    self.retransmit_refused += 1
                    continue
                stream.retransmit_budget -= len(packet)
                if abs_at:
                    copy = bytearray(packet)
                    copy[abs_at : abs_at + 3] = abs_send_time(wall)
                    packet = bytes(copy)
                if self._send_rtp(packet):
                    self.retransmitted += 1

    def _keyframe(self, ssrc: int) -> None:
        for stream in self.out.values():
            if stream.ssrc == ssrc and stream.kind == "video":
                stream.keyframe_wanted = True
                self.keyframes_on_request += 1

    def tick(self, wall: float) -> None:
        """Send what is due: SRs, RRs, REMB, NACK retries, PLI for unrecovered loss."""
        for stream in self.out.values():
            if stream.packets and wall >= stream.next_report:
                stream.next_report = wall + REPORT_INTERVAL_S * random.uniform(0.5, 1.5)
                if self._send_rtcp(stream.sender_report(wall)):
                    self.rtcp_sent["sr"] += 1
                    self.rtcp_sent["sdes"] += 1
        video: list[int] = []
        for stream in self.ins.values():
            if stream.kind == "video":
                video.append(stream.ssrc)
                if stream.missing:
                    self._retry(stream, wall)
            if wall >= stream.next_report:
                stream.next_report = wall + REPORT_INTERVAL_S * random.uniform(0.5, 1.5)
                own = self.out.get(stream.kind)
                rr = ReceiverReport(own.ssrc if own else 1, (stream.report_block(wall),))
                if self._send_rtcp(build_receiver_report(rr)):
                    self.rtcp_sent["rr"] += 1
        if video and wall >= self.next_remb:
            self.next_remb = wall + REMB_INTERVAL_S
            own = self.out.get("video")
            if self._send_rtcp(build_remb(own.ssrc if own else 1, REMB_BPS, video)):
                self.rtcp_sent["remb"] += 1

    def _retry(self, stream: InStream, wall: float) -> None:
        # Chromium asks again once a round trip has passed without the packet.
        interval = NACK_RETRY_S if self.rtt is None else max(self.rtt, NACK_RETRY_MIN_S)
        again: list[int] = []
        given_up = False
        for ext, state in list(stream.missing.items()):
            first_at, last_at, tries = state
            if tries >= NACK_MAX_RETRIES or wall - first_at > NACK_MAX_AGE_S:
                del stream.missing[ext]
                given_up = True
            elif wall - last_at >= interval:
                state[1], state[2] = wall, tries + 1
                again.append(ext)
        if again:
            self._nack(stream, again)
        if given_up:
            self._keyframe_request(stream, wall)
