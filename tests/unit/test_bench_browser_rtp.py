"""The SFU benchmark's browser-like peers build RTCP that aiortc reads, and behave as Chromium."""

from __future__ import annotations

import importlib.util
import struct
import sys
from types import ModuleType

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    unpack_remb_fci,
)

from rooms.media import rtp
from tests.conftest import ROOT


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("browser_rtp", ROOT / "bench" / "browser_rtp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["browser_rtp"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


br = _load()


def _extensions(packet: bytes) -> dict[int, bytes]:
    return dict(rtp.parse(packet).extensions)


WALL = 1_780_000_000.0


def _peer() -> tuple[object, list[bytes], list[bytes]]:
    rtp: list[bytes] = []
    rtcp: list[bytes] = []
    peer = br.BrowserRtp(
        "cname-1", lambda p: rtp.append(p) or True, lambda p: rtcp.append(p) or True
    )
    return peer, rtp, rtcp


def _video_stream(ssrc: int = 0x1111) -> object:
    return br.OutStream(
        kind="video",
        ssrc=ssrc,
        payload_type=96,
        clock_rate=90000,
        mid="1",
        ext_ids={br.MID_URI: 1, br.ABS_SEND_TIME_URI: 3},
        cname="cname-1",
        sequence=100,
        timestamp=5000,
    )


def _rtp(ssrc: int, seq: int, ts: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, ts, ssrc) + b"x" * 20


def test_sender_report_with_cname_is_read_by_aiortc_and_by_our_parser() -> None:
    sr = br.SenderReport(0xABCD, br.ntp_time(WALL), 123456, 10, 1000)
    data = br.build_sender_report(sr) + br.build_sdes([(0xABCD, "peer-cname")])
    theirs = RtcpPacket.parse(data)
    assert isinstance(theirs[0], RtcpSrPacket)
    assert theirs[0].ssrc == 0xABCD
    assert theirs[0].sender_info.rtp_timestamp == 123456
    assert theirs[0].sender_info.packet_count == 10
    assert isinstance(theirs[1], RtcpSdesPacket)
    assert theirs[1].chunks[0].items == [(1, b"peer-cname")]
    ours = br.parse_rtcp(data)
    assert ours[0] == sr
    assert ours[1] == br.Sdes(((0xABCD, "peer-cname"),))
    assert abs(br.ntp_to_wall(ours[0].ntp) - WALL) < 1e-6


def test_receiver_report_blocks_are_read_by_aiortc() -> None:
    block = br.ReportBlock(0x2222, 64, 7, (1 << 16) + 5, 33, 0x12345678, 65536)
    data = br.build_receiver_report(br.ReceiverReport(0x1111, (block,)))
    (theirs,) = RtcpPacket.parse(data)
    assert isinstance(theirs, RtcpRrPacket)
    report = theirs.reports[0]
    assert (report.ssrc, report.fraction_lost, report.packets_lost) == (0x2222, 64, 7)
    assert (report.highest_sequence, report.jitter) == ((1 << 16) + 5, 33)
    assert (report.lsr, report.dlsr) == (0x12345678, 65536)
    assert br.parse_rtcp(data) == [br.ReceiverReport(0x1111, (block,))]


def test_our_parser_reads_what_aiortc_builds() -> None:
    info = RtcpReceiverInfo(0x1111, 1, 2, 70000, 4, 5, 6)
    sr = RtcpSrPacket(ssrc=9, sender_info=RtcpSenderInfo(1 << 40, 7, 8, 9), reports=[info])
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=0x1111, lost=[10, 12, 30])
    pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=0x1111)
    parsed = br.parse_rtcp(bytes(sr) + bytes(nack) + bytes(pli))
    assert parsed[0] == br.SenderReport(
        9, 1 << 40, 7, 8, 9, (br.ReportBlock(0x1111, 1, 2, 70000, 4, 5, 6),)
    )
    assert parsed[1] == br.Nack(9, 0x1111, (10, 12, 30))
    assert parsed[2] == br.Pli(9, 0x1111)


def test_nack_across_the_sequence_wrap_names_each_packet_once() -> None:
    data = br.build_nack(1, 2, [65534, 65535, 65536, 65537, 65600])
    (theirs,) = RtcpPacket.parse(data)
    assert isinstance(theirs, RtcpRtpfbPacket) and theirs.fmt == RTCP_RTPFB_NACK
    assert sorted(s % 65536 for s in theirs.lost) == [0, 1, 64, 65534, 65535]
    assert br.parse_rtcp(data) == [br.Nack(1, 2, (65534, 65535, 0, 1, 64))]


def test_pli_and_remb_are_read_by_aiortc() -> None:
    (pli,) = RtcpPacket.parse(br.build_pli(1, 0x1111))
    assert isinstance(pli, RtcpPsfbPacket)
    assert (pli.fmt, pli.ssrc, pli.media_ssrc) == (RTCP_PSFB_PLI, 1, 0x1111)
    data = br.build_remb(1, 2_500_000, [0x1111, 0x2222])
    (remb,) = RtcpPacket.parse(data)
    assert isinstance(remb, RtcpPsfbPacket) and remb.fmt == RTCP_PSFB_APP
    bitrate, ssrcs = unpack_remb_fci(remb.fci)
    assert ssrcs == [0x1111, 0x2222]
    assert 2_490_000 <= bitrate <= 2_500_000
    (ours,) = br.parse_rtcp(data)
    assert ours.ssrcs == (0x1111, 0x2222) and ours.bitrate == bitrate


def test_mid_is_sent_until_a_report_block_covers_the_stream() -> None:
    peer, rtp, _ = _peer()
    peer.add_stream(_video_stream())
    peer.send_frame("video", [b"a" * 50, b"b" * 50], 3000, WALL)
    assert all(_extensions(p).get(1) == b"1" for p in rtp)
    assert all(len(_extensions(p)[3]) == 3 for p in rtp)
    assert rtp[-1][1] & 0x80 and not rtp[0][1] & 0x80  # marker on the frame's last packet
    # A report on another SSRC does not count.
    other = RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(0x9999, 0, 0, 0, 0, 0, 0)])
    peer.on_rtcp(bytes(other), WALL)
    peer.send_frame("video", [b"c" * 50], 3000, WALL)
    assert _extensions(rtp[-1]).get(1) == b"1"
    covered = RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(0x1111, 0, 0, 102, 0, 0, 0)])
    peer.on_rtcp(bytes(covered), WALL)
    peer.send_frame("video", [b"d" * 50], 3000, WALL)
    assert 1 not in _extensions(rtp[-1])
    assert 3 in _extensions(rtp[-1])  # abs-send-time stays
    assert peer.mid_packets == 3
    assert peer.rtcp_received["rr"] == 2


def test_audio_carries_its_level_and_sender_reports_go_out_about_every_second() -> None:
    peer, rtp, rtcp = _peer()
    audio = br.OutStream(
        "audio", 0x3333, 111, 48000, "0", {br.MID_URI: 1, br.AUDIO_LEVEL_URI: 2}, "c"
    )
    peer.add_stream(audio)
    peer.send_frame("audio", [b"o" * 40], 960, WALL)
    assert _extensions(rtp[0]) == {1: b"0", 2: bytes([0x80 | 30])}
    reports = 0
    for step in range(100):  # 10 s of 100 ms ticks
        peer.tick(WALL + step / 10)
    for data in rtcp:
        parsed = br.parse_rtcp(data)
        assert isinstance(parsed[0], br.SenderReport) and parsed[0].ssrc == 0x3333
        assert parsed[1] == br.Sdes(((0x3333, "c"),))
        reports += 1
    assert 7 <= reports <= 20


def test_received_video_gets_a_pli_at_start_a_nack_for_a_gap_and_receiver_reports() -> None:
    peer, _, rtcp = _peer()
    peer.kinds[0x5555] = "video"
    peer.on_rtp(_rtp(0x5555, 65534), WALL)
    assert br.parse_rtcp(rtcp.pop()) == [br.Pli(1, 0x5555)]
    peer.on_rtp(_rtp(0x5555, 65535), WALL)
    peer.on_rtp(_rtp(0x5555, 2), WALL)  # 0 and 1 lost across the wrap
    assert br.parse_rtcp(rtcp.pop()) == [br.Nack(1, 0x5555, (0, 1))]
    peer.on_rtp(_rtp(0x5555, 0), WALL + 0.01)  # one comes back
    for step in range(1, 16):
        peer.tick(WALL + step / 10)
    kinds = [type(p).__name__ for data in rtcp for p in br.parse_rtcp(data)]
    assert "Remb" in kinds and "ReceiverReport" in kinds
    retries = [p for d in rtcp for p in br.parse_rtcp(d) if isinstance(p, br.Nack)]
    assert retries and all(p.lost == (1,) for p in retries)
    assert kinds.count("Pli") == 1  # packet 1 never came: the decoder asks for a keyframe
    rr = next(p for d in rtcp for p in br.parse_rtcp(d) if isinstance(p, br.ReceiverReport))
    (block,) = rr.blocks
    assert block.ssrc == 0x5555
    assert block.highest_sequence == (1 << 16) + 2
    assert block.packets_lost == 1
    assert block.fraction_lost == 256 // 5


def test_nack_is_answered_from_history_and_pli_restarts_the_loop_at_its_keyframe() -> None:
    peer, rtp, _ = _peer()
    stream = _video_stream()
    peer.add_stream(stream)
    for _ in range(5):
        peer.send_frame("video", [b"f" * 50], 3000, WALL)
        stream.next_frame(90)
    sent = list(rtp)
    peer.on_rtcp(br.build_nack(1, 0x1111, [101, 103, 999]), WALL)
    assert rtp[len(sent) :] == [sent[1], sent[3]]
    assert peer.retransmitted == 2
    assert stream.next_frame(90) == 5
    peer.on_rtcp(br.build_pli(1, 0x1111), WALL)
    assert stream.next_frame(90) == 0
    assert stream.next_frame(90) == 1
    assert peer.rtcp_received == {"nack": 1, "pli": 1}


def test_retransmissions_keep_to_the_streams_bitrate_and_its_last_second() -> None:
    peer, rtp, _ = _peer()
    peer.add_stream(_video_stream())
    for frame in range(30):  # one second of one-packet frames, ~30 kB
        peer.send_frame("video", [b"f" * 1000], 3000, WALL + frame / 30)
    peer.send_frame("video", [b"g" * 1000], 3000, WALL + 1.5)
    sent = len(rtp)
    # Frames older than a second are gone; the other 16, asked for three times, are more
    # than the stream sent: the rest is refused.
    for _ in range(3):
        peer.on_rtcp(br.build_nack(1, 0x1111, range(100, 131)), WALL + 1.5)
    answered = rtp[sent:]
    assert {int.from_bytes(p[2:4], "big") for p in answered} == set(range(115, 131))
    assert sum(len(p) for p in answered) <= sum(len(p) for p in rtp[:sent])
    assert peer.retransmit_refused == 48 - len(answered) > 0


def test_audio_send_time_comes_from_the_servers_sender_report() -> None:
    peer, _, _ = _peer()
    stream = peer.on_rtp(_rtp(0x7777, 10, ts=48000), WALL)
    assert peer.audio_send_time(stream, _rtp(0x7777, 11, ts=48960)) is None
    sr = br.SenderReport(0x7777, br.ntp_time(WALL), 48000, 1, 1)
    peer.on_rtcp(br.build_sender_report(sr), WALL)
    sent = peer.audio_send_time(stream, _rtp(0x7777, 11, ts=48960))
    assert abs(sent - (WALL + 0.02)) < 1e-4


def test_a_retransmission_is_stamped_with_its_own_send_time() -> None:
    peer, rtp, _ = _peer()
    peer.add_stream(_video_stream())
    peer.send_frame("video", [b"f" * 50], 3000, WALL)
    (original,) = rtp
    peer.on_rtcp(br.build_nack(1, 0x1111, [100]), WALL + 0.5)
    again = rtp[-1]
    assert _extensions(again)[3] == br.abs_send_time(WALL + 0.5)
    assert _extensions(original)[3] == br.abs_send_time(WALL)
    assert again[:12] == original[:12] and again[-50:] == original[-50:]
    assert _extensions(again)[1] == b"1"  # the MID as first sent


def test_nack_retries_wait_a_round_trip_measured_from_the_servers_reports() -> None:
    peer, _, rtcp = _peer()
    peer.add_stream(_video_stream())
    peer.send_frame("video", [b"f" * 50], 3000, WALL)
    peer.tick(WALL)  # the first SR goes out
    (sr, _sdes) = br.parse_rtcp(rtcp.pop())
    # The server answers 0.4 s later, having held the SR 0.15 s: a 0.25 s round trip.
    lsr = (sr.ntp >> 16) & 0xFFFFFFFF
    block = br.ReportBlock(0x1111, 0, 0, 100, 0, lsr, int(0.15 * 65536))
    peer.on_rtcp(br.build_receiver_report(br.ReceiverReport(1, (block,))), WALL + 0.4)
    assert abs(peer.rtt - 0.25) < 0.001
    peer.kinds[0x5555] = "video"
    peer.on_rtp(_rtp(0x5555, 10), WALL + 1)
    peer.on_rtp(_rtp(0x5555, 12), WALL + 1)  # 11 lost: NACKed at once
    rtcp.clear()
    nacks = []
    for step in range(1, 8):  # 0.1 s ticks
        peer.tick(WALL + 1 + step / 10)
        nacks += [step for d in rtcp for p in br.parse_rtcp(d) if isinstance(p, br.Nack)]
        rtcp.clear()
    assert nacks == [3, 6]
