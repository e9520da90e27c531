"""A subscriber's end of a leg for unit tests: real SRTP, a real socket on 127.0.0.1."""

from __future__ import annotations

import os
import socket

import pylibsrtp

from rooms.media import fanout


def fanout_named(name: str) -> fanout.Forward:
    """The fan-out a test runs with. `make test` builds the compiled one (system-deps
    installs gcc and the Python headers first), so its absence is a failure, not a skip."""
    if name == "python":
        return fanout.forward_python
    forward = fanout.compiled()
    if forward is None:
        raise AssertionError(
            "rooms/media/_fanout is not built: install gcc and python3-dev, then "
            "`pip install -e .` (make test does both)"
        )
    return forward


class LoopbackSink:
    """Receives what the fan-out sends, encrypted, on a loopback socket, and decrypts it.

    SRTP leaves the RTP header and its extensions in the clear (RFC 3711 section 3.1), so
    a datagram libsrtp refuses to decrypt (a retransmission it has seen the index of, as
    a browser would refuse it too) is kept as it arrived: its header still reads true.
    """

    def __init__(self, key: bytes | None = None) -> None:
        key = key if key is not None else os.urandom(30)
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.setblocking(False)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        outbound = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        outbound.allow_repeat_tx = True  # as aiortc's own sessions: NACK answers repeat
        outbound.window_size = 1024
        self.outbound = pylibsrtp.Session(outbound)
        self.inbound = pylibsrtp.Session(
            pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
        )
        self.target: fanout.Target | None = fanout.target(
            self.outbound, self.sock, self.receiver.getsockname()
        )
        self.raw: list[bytes] = []  # every datagram as it arrived
        self._rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

    def refresh_target(self) -> fanout.Target | None:
        return self.target

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        self.sock.sendto(self.outbound.protect(bytes(packet)), self.receiver.getsockname())
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        self.rtcp.append(packet)
        return True

    @property
    def rtp(self) -> list[bytes]:
        """The RTP packets received so far (decrypted where libsrtp accepts them)."""
        while True:
            try:
                data = self.receiver.recv(2048)
            except BlockingIOError:
                break
            self.raw.append(data)
            try:
                self._rtp.append(self.inbound.unprotect(data))
            except pylibsrtp.Error:
                self._rtp.append(data)
        return self._rtp

    def close(self) -> None:
        self.receiver.close()
        self.sock.close()
