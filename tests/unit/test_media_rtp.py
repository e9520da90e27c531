"""Per-leg RTP rewriting and numbering, without a network."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from rooms.media import rtp
from rooms.media.packetmap import PacketMap


def packet(seq: int, ts: int, ssrc: int, ext: list[tuple[int, bytes]], payload: bytes) -> bytes:
    block = rtp.extension_block(ext)
    first = 0x80 | (0x10 if block else 0)
    return struct.pack("!BBHII", first, 96, seq, ts, ssrc) + block + payload


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=4),
    st.binary(max_size=200),
)
def test_rewrite_changes_only_what_a_leg_owns(
    seq: int, ts: int, ext: list[tuple[int, bytes]], payload: bytes
) -> None:
    data = packet(seq, ts, 1234, ext, payload)
    view = rtp.parse(data)
    assert view.extensions == ext and view.sequence == seq
    out = rtp.rewrite(
        data, view, payload_type=111, sequence=7, timestamp=9, ssrc=42, extensions=None
    )
    again = rtp.parse(out)
    assert (again.payload_type, again.sequence, again.timestamp, again.ssrc) == (111, 7, 9, 42)
    assert again.extensions == ext and out[again.ext_end :] == payload
    stripped = rtp.rewrite(
        data, view, payload_type=96, sequence=1, timestamp=1, ssrc=1, extensions=b""
    )
    assert rtp.parse(stripped).extensions == [] and stripped.endswith(payload)


@given(st.binary(max_size=80))
def test_garbage_is_refused_not_crashed_on(data: bytes) -> None:
    try:
        rtp.parse(data)
    except rtp.RtpError:
        pass


def test_audio_level_is_read_from_its_extension() -> None:
    view = rtp.parse(packet(1, 1, 1, [(1, b"0"), (2, bytes([0x80 | 30]))], b"x"))
    assert rtp.audio_level(view, 2) == 30
    assert rtp.audio_level(view, 3) is None


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(1, 50), st.integers(1, 50))
def test_a_leg_stays_contiguous_across_a_gate_and_a_new_source(
    first: int, second: int, before: int, after: int
) -> None:
    leg = PacketMap(90000)
    out = [leg.map(1, (first + i) % 65536, 1000 * i, i * 0.03)[0] for i in range(before)]
    leg.gate()  # a host mutes: the source keeps sending but nothing is forwarded
    out += [leg.map(1, (first + before + 10 + i) % 65536, 0, 5.0)[0] for i in range(after)]
    out += [leg.map(2, (second + i) % 65536, 77, 6.0)[0] for i in range(after)]  # reconnect
    assert all((b - a) % 65536 == 1 for a, b in zip(out, out[1:], strict=False))
    assert leg.source_sequence(out[-1]) == (second + after - 1) % 65536
