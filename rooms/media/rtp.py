"""RTP headers read and rewritten in place, without building packet objects (RFC 3550, 8285).

The forwarder touches every packet once per subscriber leg, so this module works on
bytes and offsets: parsing a packet into objects and serialising it again per leg would
cost more than the encryption does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_HEADER = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpView:
    """Where the parts of one RTP packet are; the packet itself is not copied."""

    payload_type: int
    marker: bool
    sequence: int
    timestamp: int
    ssrc: int
    ext_start: int  # offset of the extension block's 4-byte header, -1 without one
    ext_end: int  # offset just past the extension block (== payload start)
    extensions: list[tuple[int, bytes]]
    # Where each element sits: (id, offset of its header, value length), the header being
    # one byte (profile 0xBEDE) or two; a key for per-layout rewrite plans (see inplace_plan).
    layout: tuple[tuple[int, int, int], ...] = ()
    two_byte: bool = False


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192-223 sit where RTP's payload type is."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse(data: bytes) -> RtpView:
    """Read the fixed header and the header extensions of an RTP packet."""
    if len(data) < 12:
        raise RtpError("shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise RtpError("not RTP version 2")
    offset = 12 + 4 * (first & 0x0F)
    extensions: list[tuple[int, bytes]] = []
    layout: list[tuple[int, int, int]] = []
    ext_start = -1
    two_byte = False
    if first & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        ext_start = offset
        profile, words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * words
        if end > len(data):
            raise RtpError("truncated header extension")
        two_byte = profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE
        extensions = _read_extensions(data, offset + 4, end, profile, layout)
        offset = end
    elif len(data) < offset:
        raise RtpError("truncated CSRC list")
    return RtpView(
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        ext_start=ext_start,
        ext_end=offset,
        extensions=extensions,
        layout=tuple(layout),
        two_byte=two_byte,
    )


def _read_extensions(
    data: bytes, start: int, end: int, profile: int, layout: list[tuple[int, int, int]]
) -> list[tuple[int, bytes]]:
    found: list[tuple[int, bytes]] = []
    pos = start
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = data[pos]
            if byte == 0:  # padding between elements
                pos += 1
                continue
            ext_id, length = byte >> 4, (byte & 0x0F) + 1
            if ext_id == 15:  # reserved: stop reading (RFC 8285 section 4.2)
                break
            if pos + 1 + length > end:
                raise RtpError("header extension element overruns its block")
            found.append((ext_id, bytes(data[pos + 1 : pos + 1 + length])))
            layout.append((ext_id, pos, length))
            pos += 1 + length
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise RtpError("header extension element overruns its block")
            length = data[pos + 1]
            if pos + 2 + length > end:
                raise RtpError("header extension element overruns its block")
            found.append((ext_id, bytes(data[pos + 2 : pos + 2 + length])))
            layout.append((ext_id, pos, length))
            pos += 2 + length
    return found


def extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """Encode header extension elements, one-byte form when every element fits it."""
    if not elements:
        return b""
    one_byte = all(0 < i < 15 and 0 < len(v) <= 16 for i, v in elements)
    body = bytearray()
    if one_byte:
        for ext_id, value in elements:
            body.append((ext_id << 4) | (len(value) - 1))
            body += value
        profile = ONE_BYTE_PROFILE
    else:
        for ext_id, value in elements:
            body += bytes((ext_id, len(value)))
            body += value
        profile = TWO_BYTE_PROFILE
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", profile, len(body) // 4) + bytes(body)


def inplace_plan(
    view: RtpView, out_ids: dict[int, int | None], values: dict[int, bytes]
) -> bytes | None:
    """The edits that turn a packet with this extension layout into a leg's, in place.

    `out_ids` maps each publisher extension id to the leg's (None, or absent: dropped by
    overwriting the element with padding, which RFC 8285 section 4.2 lets a receiver skip);
    `values` replaces an element's value (the leg's MID), shorter values padded the same
    way. Returns the edits encoded as [offset u16][length u8][bytes] records (b"": nothing
    to change), or None when the packet cannot keep its size (a longer value, or an id
    that the one-byte form cannot carry): the caller rebuilds it with `rewrite`.
    """
    edits = bytearray()
    header = 2 if view.two_byte else 1
    for ext_id, pos, length in view.layout:
        if header + length > 255:
            return None  # an edit record holds at most 255 bytes
        out_id = out_ids.get(ext_id)
        if out_id is None:
            edits += _edit(pos, bytes(header + length))
            continue
        value = values.get(ext_id)
        if value is None:
            if out_id == ext_id:
                continue
            if view.two_byte:
                if out_id > 255:
                    return None
                edits += _edit(pos, bytes((out_id,)))
            elif 0 < out_id < 15:
                edits += _edit(pos, bytes(((out_id << 4) | (length - 1),)))
            else:
                return None
            continue
        if not value or len(value) > length:
            return None
        if view.two_byte:
            if out_id > 255:
                return None
            element = bytes((out_id, len(value))) + value
        elif 0 < out_id < 15:
            element = bytes(((out_id << 4) | (len(value) - 1),)) + value
        else:
            return None
        edits += _edit(pos, element + bytes(length - len(value)))
    return bytes(edits)


def _edit(offset: int, data: bytes) -> bytes:
    return struct.pack("!HB", offset, len(data)) + data


def apply_plan(buffer: bytearray | memoryview, plan: bytes) -> None:
    """Write `inplace_plan`'s edits into a copy of the packet."""
    i, end = 0, len(plan)
    while i < end:
        offset = (plan[i] << 8) | plan[i + 1]
        size = plan[i + 2]
        buffer[offset : offset + size] = plan[i + 3 : i + 3 + size]
        i += 3 + size


def audio_level(view: RtpView, ext_id: int) -> int | None:
    """The RFC 6464 level in -dBov (0 loudest, 127 silence), if the packet carries it."""
    for found, value in view.extensions:
        if found == ext_id and value:
            return value[0] & 0x7F
    return None


def rewrite(
    data: bytes,
    view: RtpView,
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    extensions: bytes | None,
) -> bytes:
    """A copy of `data` for one leg: its payload type, numbering, SSRC and extensions.

    `extensions` is None to keep the block as it is, or a new encoded block (b"" drops it).
    """
    if extensions is None:
        out = bytearray(data)
    else:
        start = view.ext_start if view.ext_start >= 0 else view.ext_end
        out = bytearray(data[:start])
        out += extensions
        out += data[view.ext_end :]
        if extensions:
            out[0] |= 0x10
        else:
            out[0] &= 0xEF
    out[1] = (out[1] & 0x80) | payload_type
    _SEQ_TS_SSRC.pack_into(out, 2, sequence, timestamp, ssrc)
    return bytes(out)
