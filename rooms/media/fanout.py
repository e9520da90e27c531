"""Fan-out: one decrypted packet rewritten, encrypted and sent for each of its legs.

Two implementations with one interface and byte-identical results: the compiled one
(`_fanout.c`, one call per packet: every leg's copy is rewritten and protected in C and
sent with `sendmmsg`) and this pure-Python one, used where the extension is not built.
`select` picks one at start-up (IOP_FANOUT in server/config.py).

An entry is one leg's copy: (target, marker|PT, sequence, timestamp, SSRC, plan), where
the plan is `rtp.inplace_plan`'s edits to the header extensions. `forward` returns a
bitmask: bit i set when entry i was sent.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from rooms.media import rtp

_HEADER_TAIL = struct.Struct("!BHII")  # RTP header bytes 1-11: M/PT, sequence, timestamp, SSRC
# pylibsrtp's session buffer is 1,500 bytes and must hold libsrtp's trailer too.
SRTP_BUFFER = 1500
SRTP_MAX_TRAILER_LEN = 144  # pylibsrtp.SRTP_MAX_TRAILER_LEN
LARGEST_PACKET = SRTP_BUFFER - SRTP_MAX_TRAILER_LEN
NAMES = ("c", "python")


class FanoutError(RuntimeError):
    """The fan-out asked for cannot be used in this process."""


class Target(NamedTuple):
    """Where a leg's packets go: an outbound SRTP session and a datagram socket.

    The first three fields are what the compiled fan-out reads (libsrtp's `srtp_t` as an
    address, the socket, the peer's `struct sockaddr`); the rest are the Python one's.
    """

    ctx: int
    sock: socket.socket
    sockaddr: bytes
    addr: Any
    session: Any  # the cffi srtp_t
    cdata: Any  # the session's own buffer (pylibsrtp's), as cffi char[]
    buffer: Any  # the same, as a writable buffer
    view: memoryview
    length: Any  # an int * for libsrtp's in/out length


def target(session: Any, sock: socket.socket, addr: Any) -> Target:
    """A target for a pylibsrtp outbound session, a socket and the peer's address."""
    ctx = session._srtp[0]
    buffer = session._buffer
    return Target(
        ctx=int(srtp_ffi.cast("uintptr_t", ctx)),
        sock=sock,
        sockaddr=sockaddr(sock.family, addr),
        addr=addr,
        session=ctx,
        cdata=session._cdata,
        buffer=buffer,
        view=memoryview(buffer),
        length=srtp_ffi.new("int *"),
    )


def sockaddr(family: int, addr: Any) -> bytes:
    """The `struct sockaddr_in`/`sockaddr_in6` that sendmmsg takes, for (host, port[, ...])."""
    host, port = addr[0], addr[1]
    if family == socket.AF_INET6:
        if ":" not in host:
            host = "::ffff:" + host  # a v4 peer reached through a dual-stack socket
        flowinfo = addr[2] if len(addr) > 2 else 0
        scope = addr[3] if len(addr) > 3 else 0
        return (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", port, flowinfo)
            + socket.inet_pton(socket.AF_INET6, host)
            + struct.pack("=I", scope)
        )
    return (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", port)
        + socket.inet_aton(host)
        + bytes(8)
    )


Entry = tuple[Target, int, int, int, int, bytes]
Forward = Callable[[bytes, Sequence[Entry]], int]


def forward_python(packet: bytes, entries: Sequence[Entry]) -> int:
    """Send `packet` once per entry, each copy rewritten and protected; a bitmask of sends."""
    size = len(packet)
    if size > LARGEST_PACKET or size < 12:
        return 0
    protect = srtp_lib.srtp_protect
    pack = _HEADER_TAIL.pack_into
    sent = 0
    bit = 1
    for target, marker_pt, sequence, timestamp, ssrc, plan in entries:
        buffer = target.buffer
        buffer[0:size] = packet
        pack(buffer, 1, marker_pt, sequence, timestamp, ssrc)
        if plan:
            rtp.apply_plan(target.view, plan)
        length = target.length
        length[0] = size
        if not protect(target.session, target.cdata, length):
            try:
                target.sock.sendto(target.view[: length[0]], target.addr)
                sent |= bit
            except OSError:
                # Not draining (or closed underneath): late media is worse than lost
                # media; NACK and PLI recover the loss, a queue would add latency.
                pass
        bit <<= 1
    return sent


def compiled() -> Forward | None:
    """The compiled fan-out, initialised; None when the extension is not built."""
    try:
        from rooms.media import _fanout  # type: ignore[attr-defined]
    except ImportError:
        return None
    address = int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, "srtp_protect")))
    _fanout.init(address, LARGEST_PACKET)
    forward: Forward = _fanout.forward
    return forward


def default_name() -> str:
    """c when the extension is built, else python."""
    return "c" if compiled() is not None else "python"


_selected: list[tuple[str, Forward]] = []  # the process-wide choice, once made


def select(name: str) -> None:
    """Use this fan-out from now on (process-wide); c refuses when it is not built."""
    if name not in NAMES:
        raise FanoutError(f"unknown fan-out {name!r}: choose c or python")
    chosen = compiled() if name == "c" else forward_python
    if chosen is None:
        raise FanoutError(
            "IOP_FANOUT=c but rooms/media/_fanout is not built: install gcc and the "
            "Python headers (make system-deps) and run `pip install -e .` again, "
            "or set IOP_FANOUT=python"
        )
    _selected[:] = [(name, chosen)]


def current() -> tuple[str, Forward]:
    """The fan-out in use and its name (c when built, unless `select` chose otherwise)."""
    if not _selected:
        select(default_name())
    return _selected[0]
