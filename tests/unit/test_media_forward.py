"""The forwarding plane with recording sinks: per-leg rewriting and RTCP per leg."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rooms.media import rtp
from rooms.media.forward import CACHE_SIZE, Forwarder, Leg, Track
from rooms.media.packetmap import SEQ_MOD, PacketMap
from tests.unit.loopback_sink import LoopbackSink as Sink
from tests.unit.loopback_sink import fanout_named

FANOUTS = pytest.mark.parametrize("fanout_name", ["c", "python"])


@pytest.fixture(autouse=True)
def close_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Sink]]:
    made: list[Sink] = []
    original = Sink.__init__

    def tracked(self: Sink, key: bytes | None = None) -> None:
        original(self, key)
        made.append(self)

    monkeypatch.setattr(Sink, "__init__", tracked)
    yield made
    for sink in made:
        sink.close()


class Time:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def video_packet(seq: int, ts: int, marker: bool = False) -> bytes:
    header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 97, seq, ts, 5555)
    return header + b"\x10payload"


def setup(fanout_name: str = "python") -> tuple[Forwarder, Track, Leg, Sink, Sink, Time]:
    time = Time()
    forwarder = Forwarder(monotonic=time, fanout_with=fanout_named(fanout_name))
    publisher, subscriber = Sink(), Sink()
    track = Track("patient:a", "video", "video", sink=publisher, ssrc=5555)
    track.mimes = {97: "video/vp8"}
    leg = Leg("patient:a", "video", "patient:b", subscriber, ssrc=777, clock_rate=90000)
    leg.payload_types = {"video/vp8": 120}
    leg.negotiated = True
    leg.track = track
    track.legs = [leg]
    forwarder.tracks[5555] = track
    forwarder.legs[("patient:b", 777)] = leg
    return forwarder, track, leg, publisher, subscriber, time


@FANOUTS
def test_each_leg_gets_its_own_ssrc_and_payload_type_and_nothing_is_decoded(
    fanout_name: str,
) -> None:
    forwarder, _track, _leg, _pub, sub, _time = setup(fanout_name)
    track = forwarder.tracks[5555]
    for seq in range(10, 15):
        forwarder.on_rtp(track, video_packet(seq, seq * 3000, marker=True))
    views = [rtp.parse(p) for p in sub.rtp]
    assert [v.ssrc for v in views] == [777] * 5
    assert [v.payload_type for v in views] == [120] * 5
    assert [v.sequence for v in views] == [10, 11, 12, 13, 14]
    assert all(p.endswith(b"\x10payload") for p in sub.rtp)


def test_a_nack_is_answered_from_the_cache_and_what_is_gone_goes_to_the_publisher() -> None:
    forwarder, track, _leg, pub, sub, _time = setup()
    for seq in range(100, 110):
        forwarder.on_rtp(track, video_packet(seq, seq))
    sub.rtp.clear()
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=777, lost=[103, 104])
    forwarder.on_rtcp("patient:b", bytes(nack), {})
    assert [rtp.parse(p).sequence for p in sub.rtp] == [103, 104]
    assert forwarder.retransmitted == 2
    old = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=777, lost=[40000])
    forwarder.on_rtcp("patient:b", bytes(old), {})
    (asked,) = RtcpPacket.parse(pub.rtcp[-1])
    assert isinstance(asked, RtcpRtpfbPacket) and asked.media_ssrc == 5555


def test_a_nack_whose_bitmask_crosses_the_sequence_wrap_is_answered() -> None:
    forwarder, track, _leg, pub, sub, _time = setup()
    for seq in (65532, 65533, 65534, 65535, 0, 1, 2):
        forwarder.on_rtp(track, video_packet(seq, seq))
    sub.rtp.clear()
    # Packet ID 65534 with bits for +1, +2 and +3: 65535, 0 and 1 (the parser returns
    # 65536 and 65537 for the last two).
    nack = struct.pack("!BBHIIHH", 0x81, 205, 3, 1, 777, 65534, 0b111)
    forwarder.on_rtcp("patient:b", nack, {})
    assert [rtp.parse(p).sequence for p in sub.rtp] == [65534, 65535, 0, 1]
    assert forwarder.retransmitted == 4
    assert pub.rtcp == []


def three_subscribers() -> tuple[Forwarder, Track, Sink, dict[str, Sink], Time]:
    forwarder, track, _leg, publisher, sink_b, time = setup()
    sinks = {"patient:b": sink_b}
    for number, name in enumerate(("patient:c", "patient:d"), start=1):
        sink = sinks[name] = Sink()
        leg = Leg("patient:a", "video", name, sink, ssrc=777 + number, clock_rate=90000)
        leg.payload_types = {"video/vp8": 120}
        leg.negotiated = True
        leg.track = track
        track.legs.append(leg)
        forwarder.legs[(name, leg.ssrc)] = leg
    return forwarder, track, publisher, sinks, time


def nack_for(forwarder: Forwarder, subscriber: str, source_seq: int) -> bytes:
    (leg,) = (leg for (name, _), leg in forwarder.legs.items() if name == subscriber)
    leg_seq = (source_seq + leg.map.seq_offset) % SEQ_MOD
    return bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=leg.ssrc, lost=[leg_seq]))


def copies(sink: Sink, source_seq: int, leg: Leg) -> int:
    wanted = (source_seq + leg.map.seq_offset) % SEQ_MOD
    return sum(1 for p in sink.rtp if rtp.parse(p).sequence == wanted)


def test_a_packet_every_subscriber_missed_is_asked_for_once_and_reaches_each_once() -> None:
    forwarder, track, publisher, sinks, time = three_subscribers()
    for seq in [*range(1000, 1050), *range(1051, 1060)]:  # 1050 never reached the server
        forwarder.on_rtp(track, video_packet(seq, seq))
    for name in sinks:
        forwarder.on_rtcp(name, nack_for(forwarder, name, 1050), {})
    time.now += 0.05
    forwarder.on_rtcp("patient:b", nack_for(forwarder, "patient:b", 1050), {})
    asked = [RtcpPacket.parse(p)[0] for p in publisher.rtcp]
    assert [p.lost for p in asked if isinstance(p, RtcpRtpfbPacket)] == [[1050]]
    time.now += 0.1  # no answer a round trip later: asked again
    forwarder.on_rtcp("patient:c", nack_for(forwarder, "patient:c", 1050), {})
    assert len(publisher.rtcp) == 2
    # The publisher answers both; the packet never reached the server, so every
    # subscriber gets it, once.
    forwarder.on_rtp(track, video_packet(1050, 1050))
    forwarder.on_rtp(track, video_packet(1050, 1050))
    legs = {leg.subscriber: leg for leg in track.legs}
    assert {name: copies(sink, 1050, legs[name]) for name, sink in sinks.items()} == {
        "patient:b": 1,
        "patient:c": 1,
        "patient:d": 1,
    }


def test_a_retransmission_goes_only_to_the_subscriber_that_asked() -> None:
    forwarder, track, publisher, sinks, _time = three_subscribers()
    for seq in range(1000, 1400):  # 1100 has left the 256-packet cache
        forwarder.on_rtp(track, video_packet(seq, seq))
        if seq % 50 == 0:
            for sink in sinks.values():
                sink.rtp  # noqa: B018 (read the socket before its buffer fills)
    forwarder.on_rtcp("patient:b", nack_for(forwarder, "patient:b", 1100), {})
    (asked,) = RtcpPacket.parse(publisher.rtcp[-1])
    assert isinstance(asked, RtcpRtpfbPacket) and asked.lost == [1100]
    forwarder.on_rtp(track, video_packet(1100, 1100))
    legs = {leg.subscriber: leg for leg in track.legs}
    assert {name: copies(sink, 1100, legs[name]) for name, sink in sinks.items()} == {
        "patient:b": 2,  # the original and the retransmission it asked for
        "patient:c": 1,
        "patient:d": 1,
    }


def test_keyframe_requests_reach_the_publisher_at_most_every_500_ms() -> None:
    forwarder, _track, _leg, pub, _sub, time = setup()
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=777)
    forwarder.on_rtcp("patient:b", bytes(pli), {})
    forwarder.on_rtcp("patient:b", bytes(pli), {})
    assert len(pub.rtcp) == 1
    time.now += 0.6
    forwarder.flush_keyframe_requests()  # the held-back request goes out, not lost
    assert len(pub.rtcp) == 2
    (sent,) = RtcpPacket.parse(pub.rtcp[-1])
    assert isinstance(sent, RtcpPsfbPacket) and sent.media_ssrc == 5555


def test_a_new_legs_first_keyframe_request_goes_out_at_once_within_the_window() -> None:
    # The keyframe asked for when the server's side of the connection came up is often
    # lost before the browser has its keys; the browser's first PLI must not wait 500 ms.
    forwarder, track, leg, pub, _sub, time = setup()
    leg.first_request_owed = False
    forwarder.request_keyframe(track)
    assert len(pub.rtcp) == 1
    newcomer = Leg("patient:a", "video", "patient:c", Sink(), ssrc=888, clock_rate=90000)
    newcomer.payload_types, newcomer.negotiated, newcomer.track = {"video/vp8": 120}, True, track
    track.legs.append(newcomer)
    forwarder.legs[("patient:c", 888)] = newcomer
    time.now += 0.1
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=888)
    forwarder.on_rtcp("patient:c", bytes(pli), {})
    assert len(pub.rtcp) == 2
    forwarder.on_rtcp("patient:c", bytes(pli), {})  # its later ones keep to the window
    first_leg_pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=777)
    forwarder.on_rtcp("patient:b", bytes(first_leg_pli), {})
    assert len(pub.rtcp) == 2


def test_sender_reports_follow_the_publishers_timeline_with_real_counts() -> None:
    forwarder, track, leg, _pub, _sub, time = setup()
    for seq in range(1, 4):
        forwarder.on_rtp(track, video_packet(seq, 90000 + seq))
    publisher_sr = RtcpSrPacket(
        ssrc=5555,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=7 << 32, rtp_timestamp=90000, packet_count=3, octet_count=24
        ),
    )
    forwarder.on_rtcp("patient:a", bytes(publisher_sr), {5555: track})
    time.now += 1.0
    (sr,) = RtcpPacket.parse(forwarder.sender_reports([leg]))
    assert isinstance(sr, RtcpSrPacket) and sr.ssrc == 777
    assert sr.sender_info.packet_count == 3
    assert sr.sender_info.octet_count == 3 * len(b"\x10payload")
    assert sr.sender_info.ntp_timestamp == 8 << 32  # one second later on its clock
    assert sr.sender_info.rtp_timestamp == 90000 + 90000 + leg.map.ts_offset


@FANOUTS
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["packet", "gate", "new_source"]),
            st.integers(-40, 40),  # sequence step: reordering, loss, duplicates
            st.integers(0, 0xFFFF),  # a new source's random start
        ),
        min_size=1,
        max_size=60,
    )
)
def test_the_forwarders_in_order_fast_path_numbers_packets_exactly_as_packet_map_does(
    fanout_name: str, steps: list[tuple[str, int, int]]
) -> None:
    """on_rtp inlines PacketMap.map's in-order case; both must agree, whichever fan-out
    sends (the header of what arrives is read: duplicates do not decrypt twice)."""
    forwarder, track, leg, pub, sub, time = setup(fanout_name)
    try:
        check_numbering(forwarder, track, leg, sub, time, steps)
    finally:
        pub.close()
        sub.close()


def check_numbering(
    forwarder: Forwarder,
    track: Track,
    leg: Leg,
    sub: Sink,
    time: Time,
    steps: list[tuple[str, int, int]],
) -> None:
    reference = PacketMap(leg.clock_rate)
    ssrc, seq = 5555, 65500  # near the wrap, to cross it
    cached: dict[int, tuple[int, int]] = {}  # the track's cache: slot -> (ssrc, sequence)
    for action, step, start in steps:
        time.now += 0.02
        if action == "gate":
            leg.map.gate()
            reference.gate()
            continue
        if action == "new_source":
            ssrc, seq = ssrc + 1, start
        else:
            seq = (seq + step) % SEQ_MOD
        timestamp = (seq * 3000) % (1 << 32)
        packet = struct.pack("!BBHII", 0x80, 97, seq, timestamp, ssrc) + b"\x10payload"
        sub.rtp.clear()
        forwarder.on_rtp(track, packet)
        if cached.get(seq % CACHE_SIZE) == (ssrc, seq):
            assert sub.rtp == []  # a copy of a packet forwarded already is not sent again
            continue
        cached[seq % CACHE_SIZE] = (ssrc, seq)
        expected = reference.map(ssrc, seq, timestamp, time.now)
        (sent,) = sub.rtp
        view = rtp.parse(sent)
        assert (view.sequence, view.timestamp) == expected
    assert leg.map == reference
