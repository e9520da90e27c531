"""The compiled and the Python fan-out send the same bytes; extensions are edited in place."""

from __future__ import annotations

import os
import struct

import pytest
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from rooms.media import fanout, rtp
from rooms.media.forward import AUDIO_LEVEL_URI, MID_URI, Forwarder, Leg, Track
from tests.unit.loopback_sink import LoopbackSink, fanout_named

ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def packet(
    seq: int, elements: list[tuple[int, bytes]], *, two_byte: bool = False, csrcs: int = 0
) -> bytes:
    """An audio packet from the publisher with these header extension elements."""
    first = 0x80 | (0x10 if elements else 0) | csrcs
    header = struct.pack("!BBHII", first, 111, seq, seq * 960, 0xABCDEF)
    header += b"".join(struct.pack("!I", 1000 + i) for i in range(csrcs))
    body = bytearray()
    for ext_id, value in elements:
        if two_byte:
            body += bytes((ext_id, len(value)))
        else:
            body.append((ext_id << 4) | (len(value) - 1))
        body += value
    body += bytes(-len(body) % 4)
    if elements:
        header += struct.pack("!HH", 0x1000 if two_byte else 0xBEDE, len(body) // 4) + body
    return header + b"opus frame " + bytes([seq % 256]) * 40


class World:
    """A forwarder with one publisher track and legs whose numbering, ids and MIDs differ."""

    def __init__(self, forward: fanout.Forward, keys: list[bytes]) -> None:
        self.forwarder = Forwarder(monotonic=lambda: 100.0, fanout_with=forward)
        self.sinks = [LoopbackSink(key) for key in keys]
        self.track = Track("patient:a", "audio", "audio", sink=self.sinks[0], ssrc=0xABCDEF)
        self.track.mimes = {111: "audio/opus"}
        self.track.ext_ids = {MID_URI: 1, AUDIO_LEVEL_URI: 2, ABS_SEND_TIME_URI: 3}
        same = {MID_URI: 1, AUDIO_LEVEL_URI: 2, ABS_SEND_TIME_URI: 3}
        moved = {MID_URI: 4, AUDIO_LEVEL_URI: 7}  # abs-send-time not negotiated: dropped
        self.legs = [
            self._leg("patient:b", 1, 0x1111, same, "5"),
            self._leg("patient:c", 2, 0x2222, moved, "a"),
            # Three legs on one socket: two go out in one sendmmsg, the third's MID cannot
            # fit in place (the packet is rebuilt and sent on its own).
            self._leg("patient:d", 3, 0x3333, same, "7"),
            self._leg("patient:e", 3, 0x4444, same, "10"),
            self._leg("patient:f", 3, 0x5555, same, "8"),
        ]

    def _leg(self, who: str, sink: int, ssrc: int, ids: dict[str, int], mid: str) -> Leg:
        leg = Leg("patient:a", "audio", who, self.sinks[sink], ssrc=ssrc, clock_rate=48000)
        leg.payload_types = {"audio/opus": 109}
        leg.ext_ids = dict(ids)
        leg.mid = mid
        leg.negotiated = True
        leg.track = self.track
        self.track.legs.append(leg)
        self.forwarder.legs[(who, ssrc)] = leg
        return leg

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def traffic(world: World) -> None:
    mid, level, send_time = (1, b"1"), (2, bytes([0x80 | 20])), (3, b"\x01\x02\x03")
    unknown = (9, b"\xff\xff")
    seq = 60000
    for elements, kwargs in [
        ([mid, level, send_time], {}),
        ([level, send_time], {}),
        ([level, mid], {"csrcs": 2}),
        ([send_time, unknown, mid], {}),
        ([mid, level, send_time], {"two_byte": True}),
        ([], {}),
    ]:
        for _ in range(3):
            seq += 1
            world.forwarder.on_rtp(world.track, packet(seq, elements, **kwargs))
    # Leg b's subscriber reports on its SSRC: it knows the m-line, MID stops for it.
    report = RtcpRrPacket(
        ssrc=99,
        reports=[
            RtcpReceiverInfo(
                ssrc=0x1111,
                fraction_lost=0,
                packets_lost=0,
                highest_sequence=seq,
                jitter=0,
                lsr=0,
                dlsr=0,
            )
        ],
    )
    world.forwarder.on_rtcp("patient:b", bytes(report), {})
    for _ in range(3):
        seq += 1
        world.forwarder.on_rtp(world.track, packet(seq, [mid, level, send_time]))


def test_the_compiled_and_python_fan_outs_send_identical_bytes() -> None:
    keys = [os.urandom(30) for _ in range(4)]
    worlds = [World(fanout_named("c"), keys), World(fanout.forward_python, keys)]
    try:
        for world in worlds:
            traffic(world)
        for world in worlds:
            for sink in world.sinks:
                assert sink.rtp is not None  # reads what arrived into sink.raw
        compiled, python = ([s.raw for s in w.sinks] for w in worlds)
        assert [len(r) for r in compiled] == [0, 21, 21, 63]
        assert compiled == python
        assert worlds[0].forwarder.forwarded == worlds[1].forwarder.forwarded == 105
    finally:
        for world in worlds:
            world.close()


@pytest.mark.parametrize("fanout_name", ["c", "python"])
def test_each_leg_reads_its_own_mid_and_ids_until_its_receiver_reports_on_it(
    fanout_name: str,
) -> None:
    forward = fanout_named(fanout_name)
    world = World(forward, [os.urandom(30) for _ in range(4)])
    try:
        traffic(world)
        b, c, de = (world.sinks[i].rtp for i in (1, 2, 3))
        first_b, first_c = rtp.parse(b[0]), rtp.parse(c[0])
        assert first_b.extensions == [(1, b"5"), (2, bytes([0x80 | 20])), (3, b"\x01\x02\x03")]
        assert first_c.extensions == [(4, b"a"), (7, bytes([0x80 | 20]))]
        assert len(b[0]) == len(c[0])  # edited in place: the packet keeps its size
        d = [p for p in de if rtp.parse(p).ssrc == 0x3333]
        e = [p for p in de if rtp.parse(p).ssrc == 0x4444]
        f = [p for p in de if rtp.parse(p).ssrc == 0x5555]
        assert len(d) == len(e) == len(f) == 21
        assert rtp.parse(d[0]).extensions[0] == (1, b"7")
        assert rtp.parse(e[0]).extensions[0] == (1, b"10")  # rebuilt, longer
        assert rtp.parse(f[0]).extensions[0] == (1, b"8")
        # The two-byte form and a CSRC list are edited in place too.
        assert rtp.parse(c[6]).extensions == [(7, bytes([0x80 | 20])), (4, b"a")]
        assert rtp.parse(c[12]).extensions == [(4, b"a"), (7, bytes([0x80 | 20]))]
        # An id nobody negotiated is not passed on.
        assert all(i != 9 for p in b + c + de for i, _ in rtp.parse(p).extensions)
        # After leg b's receiver report: no MID on b, still on the others.
        assert [i for i, _ in rtp.parse(b[-1]).extensions] == [2, 3]
        assert rtp.parse(c[-1]).extensions[0] == (4, b"a")
        assert all(p[-40:] == bytes([rtp.parse(p).sequence % 256]) * 40 for p in b)
    finally:
        world.close()


def test_more_legs_than_one_compiled_batch_are_all_sent_alike() -> None:
    # The compiled fan-out prepares 64 copies at a time; a 30-patient group has more legs.
    key = os.urandom(30)
    sinks = [LoopbackSink(key), LoopbackSink(key)]
    try:
        source = packet(7, [(1, b"1")])
        for forward, sink in zip((fanout_named("c"), fanout.forward_python), sinks, strict=True):
            assert sink.target is not None
            entries = [(sink.target, 109, 100 + i, 960 * i, 0x10000 + i, b"") for i in range(70)]
            assert forward(source, entries) == (1 << 70) - 1
            assert len(sink.rtp) == 70
        assert sinks[0].raw == sinks[1].raw
        assert [rtp.parse(p).ssrc for p in sinks[0].rtp] == [0x10000 + i for i in range(70)]
    finally:
        for sink in sinks:
            sink.close()
