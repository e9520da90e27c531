"""Every place the SFU reaches into aiortc's (and aioice's) internals, and nowhere else.

Written against aiortc 1.16.0 and aioice 0.13.0 (pinned in pyproject.toml);
tests/unit/test_media_hooks.py fails loudly if an upgrade moves what these functions
touch.

Why reach in at all: aiortc's public path decodes every received frame, and even its
pre-encoded path re-packetizes each frame in a task per sender with RTCP tasks per
sender and receiver. A forwarding SFU only needs three things aiortc keeps private:
the SRTP sessions its DTLS handshake derived, the ICE pair it nominated, and a way to
stop its per-track RTP/RTCP pipelines from starting. With those, a packet is decrypted
in the ICE datagram callback and fanned out synchronously (rooms/media/fanout.py).
A fourth, MID allocation, keeps the server's MIDs one character long (see use_short_mids).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
import aiortc.rtcpeerconnection
import pylibsrtp
import structlog
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from rooms.media import fanout

log = structlog.get_logger(__name__)
AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"
PYLIBSRTP_VERSION = "1.0.0"
# One character each: the MID header extension a publisher sends carries its own m-line's
# MID, and a leg's copy can take the leg's MID in place (without rebuilding the packet)
# only when the leg's is no longer than the publisher's. aiortc counts "0", "1", ...
# "10": two characters from the eleventh m-line on. Letters keep 62 m-lines on one
# character; beyond that aiortc's numbers (two characters and up) are used and those
# legs are rebuilt per packet.
SHORT_MIDS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_original_allocate_mid = aiortc.rtcpeerconnection.allocate_mid


class HookError(RuntimeError):
    """aiortc or aioice no longer has what the forwarder hooks into."""


def check_versions() -> None:
    """Refuse to run against an aiortc/aioice these hooks were not written for."""
    wanted = (AIORTC_VERSION, AIOICE_VERSION, PYLIBSRTP_VERSION)
    found = tuple(importlib.metadata.version(n) for n in ("aiortc", "aioice", "pylibsrtp"))
    if found != wanted:
        raise HookError(
            "media hooks are written for aiortc / aioice / pylibsrtp "
            f"{' / '.join(wanted)}, found {' / '.join(found)}"
        )


_original_host_addresses = aioice.ice.get_host_addresses


def use_host_addresses(hosts: Sequence[str]) -> None:
    """Gather ICE host candidates on these addresses only (empty: every interface).

    aioice skips 127.0.0.1, so a server whose media must stay on loopback (tests,
    benchmarks) names it here.
    """
    if not hosts:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    chosen = list(hosts)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [h for h in chosen if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def allocate_short_mid(mids: set[str]) -> str:
    """A MID not in `mids` (and now added to it), one character while any is left."""
    for mid in SHORT_MIDS:
        if mid not in mids:
            mids.add(mid)
            return mid
    return str(_original_allocate_mid(mids))


def use_short_mids() -> None:
    """Allocate one-character MIDs in every peer connection of this process."""
    aiortc.rtcpeerconnection.allocate_mid = allocate_short_mid


def silence_sender(
    transceiver: RTCRtpTransceiver, on_parameters: Callable[[RTCRtpSendParameters], None]
) -> None:
    """Negotiate the sender but never start its RTP/RTCP tasks; report what was agreed."""

    async def send(parameters: RTCRtpSendParameters) -> None:
        on_parameters(parameters)

    transceiver.sender.send = send  # type: ignore[method-assign]


def silence_receiver(
    transceiver: RTCRtpTransceiver, on_parameters: Callable[[RTCRtpReceiveParameters], None]
) -> None:
    """Negotiate the receiver but start no decoder thread and no RTCP task."""

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        on_parameters(parameters)

    transceiver.receiver.receive = receive  # type: ignore[method-assign]


def sender_ssrc(transceiver: RTCRtpTransceiver) -> int:
    """The SSRC aiortc chose for a sending m-line (announced in the SDP)."""
    return int(transceiver.sender._ssrc)


def negotiated(
    pc: RTCPeerConnection, transceiver: RTCRtpTransceiver
) -> tuple[RTCRtpSendParameters | None, RTCRtpReceiveParameters | None]:
    """What aiortc agreed for an m-line: (send, receive) parameters, None where unused.

    aiortc hands these to the sender and receiver only from a connect task that skips
    m-lines negotiated while the DTLS handshake is still running; the forwarder asks
    for them itself once the transport is up, after every answer.
    """
    direction = transceiver.currentDirection
    send = receive = None
    if direction in ("sendonly", "sendrecv"):
        send = pc._RTCPeerConnection__localRtp(transceiver)  # type: ignore[attr-defined]
    if direction in ("recvonly", "sendrecv"):
        receive = pc._RTCPeerConnection__remoteRtp(transceiver)  # type: ignore[attr-defined]
    return send, receive


def set_stream_id(transceiver: RTCRtpTransceiver, stream_id: str) -> None:
    """The msid stream of a sending m-line: one per publisher, so browsers lip-sync."""
    transceiver.sender._stream_id = stream_id


class SrtpOut:
    """An outbound pylibsrtp session used in place: packets are copied into libsrtp's own
    buffer, encrypted there and sent from it.

    pylibsrtp's `Session.protect` checks its argument, allocates a length cell, copies the
    packet in and the result out on every call; at one call per packet per leg that is
    most of what protecting costs in Python. This calls the same libsrtp function
    (libsrtp 2's in-place `srtp_protect`) through pylibsrtp's own cffi binding.
    """

    __slots__ = ("session", "ctx", "cdata", "buffer", "view", "room", "length")

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session
        try:
            self.ctx = session._srtp[0]
            self.cdata = session._cdata
            self.buffer = session._buffer
        except AttributeError as exc:
            raise HookError(f"pylibsrtp internals moved: {exc}") from exc
        self.view = memoryview(self.buffer)
        self.room = len(self.buffer) - pylibsrtp.SRTP_MAX_TRAILER_LEN  # largest packet
        self.length = srtp_ffi.new("int *")

    def protect(self, size: int) -> memoryview | None:
        """Encrypt the `size` bytes at the start of `buffer`; the packet to send, or None."""
        length = self.length
        length[0] = size
        if srtp_lib.srtp_protect(self.ctx, self.cdata, length):
            return None  # libsrtp refused it (e.g. numbering it has seen): dropped
        return self.view[: length[0]]


class _Nominated(dict[int, Any]):
    """aioice's nominated pairs (by component), telling the wire when one changes."""

    def __init__(self, pairs: dict[int, Any], on_change: Callable[[], None]) -> None:
        super().__init__(pairs)
        self.on_change = on_change

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, value)
        self.on_change()

    def __delitem__(self, key: int) -> None:
        super().__delitem__(key)
        self.on_change()

    def clear(self) -> None:
        super().clear()
        self.on_change()

    def pop(self, key: int, *default: Any) -> Any:
        value = super().pop(key, *default)
        self.on_change()
        return value


class Wire:
    """A peer connection's SRTP and nominated ICE pair, used directly.

    `tap` replaces the ICE connection's datagram callback: SRTP and SRTCP are
    decrypted there and handed to the forwarder synchronously; everything else (DTLS)
    goes on to aiortc as before.
    """

    def __init__(self, pc: RTCPeerConnection) -> None:
        transceivers = pc.getTransceivers()
        if not transceivers:
            raise HookError("a peer connection without m-lines has no transport")
        # Everything is bundled onto the first m-line's transport (aiortc always offers
        # BUNDLE; m-lines added later are moved onto it when they are negotiated).
        self._dtls: Any = transceivers[0].sender.transport
        try:
            self._connection: Any = self._dtls.transport._connection
            self._deliver = self._connection.data_received
            nominated = self._connection._nominated
        except AttributeError as exc:
            raise HookError(f"aiortc internals moved: {exc}") from exc
        # The fan-out keeps `target` (session, socket, address) between packets instead of
        # checking the nominated pair per leg per packet: aioice says when it changes.
        if isinstance(nominated, _Nominated):
            nominated.on_change = self._forget_target
        else:
            nominated = _Nominated(nominated, self._forget_target)
            self._connection._nominated = nominated
        self._nominated: dict[int, Any] = nominated
        self.target: fanout.Target | None = None
        self._tapped = False
        self.dropped = 0
        self._pair: Any = None
        self._sock: Any = None
        self._addr: Any = None
        self._srtp: SrtpOut | None = None  # wraps DTLS's outbound session once there is one
        self._out: SrtpOut | None = None  # _srtp, while there is also a socket to send on

    @property
    def ready(self) -> bool:
        """DTLS finished and a pair is nominated: packets can flow both ways."""
        return self._dtls._tx_srtp is not None and 1 in self._connection._nominated

    def tap(self, on_rtp: Callable[[bytes], None], on_rtcp: Callable[[bytes], None]) -> None:
        """Route decrypted RTP and RTCP to the callbacks from now on."""
        deliver = self._deliver
        dtls = self._dtls

        def data_received(data: bytes, component: int) -> None:
            rx = dtls._rx_srtp
            if rx is None or len(data) < 2 or not 127 < data[0] < 192:
                deliver(data, component)
                return
            rtcp = 192 <= data[1] <= 223
            try:
                plain = rx.unprotect_rtcp(data) if rtcp else rx.unprotect(data)
            except pylibsrtp.Error:
                return  # forged, replayed or damaged: dropped, as aiortc does
            try:
                (on_rtcp if rtcp else on_rtp)(plain)
            except Exception:
                # An exception escaping a datagram callback makes asyncio close the
                # socket, which would end this participant's media for one bad packet.
                log.exception("media.forward_failed")

        self._connection.data_received = data_received
        # aioice tries to parse every datagram as STUN first and takes the ValueError as
        # "not STUN"; RTP and RTCP (first byte 128-191, RFC 7983) are never STUN, so each
        # of the connection's protocols (host and relay alike) hands them over directly.
        for protocol in self._connection._protocols:
            stun = protocol.datagram_received

            def demux(data: bytes, addr: Any, stun: Callable[..., None] = stun) -> None:
                if data and 127 < data[0] < 192:
                    data_received(data, 1)
                else:
                    stun(data, addr)

            protocol.datagram_received = demux
        self._tapped = True

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        """Encrypt and send one RTP packet on the nominated pair; False if not possible."""
        out = self._usable()
        size = len(packet)
        if out is None or size > out.room:
            return False
        out.buffer[0:size] = packet
        data = out.protect(size)
        return data is not None and self._sendto(data)

    def refresh_target(self) -> fanout.Target | None:
        """Where the fan-out sends this wire's legs, once DTLS and ICE are up (kept in
        `target` until the nominated pair changes)."""
        out = self._usable()
        if out is None:
            return None
        self.target = fanout.target(out.session, self._sock, self._addr)
        return self.target

    def _forget_target(self) -> None:
        self.target = None

    def send_rtcp(self, packet: bytes) -> bool:
        """Encrypt and send one (compound) RTCP packet."""
        out = self._usable()
        if out is None:
            return False
        try:
            data = out.session.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            return False
        return self._sendto(data)

    def _usable(self) -> SrtpOut | None:
        """The SRTP session to send with, once DTLS and ICE are up; looked up again when the
        nominated pair or the session changes (rarely), not per packet."""
        pair = self._nominated.get(1)
        if pair is not self._pair:
            self._pair = pair
            transport = getattr(pair.protocol, "transport", None) if pair else None
            # The datagram socket itself: asyncio's sendto adds ~3.5 us per packet of
            # checks and, worse, an unbounded user-space queue when the socket is full.
            self._sock = getattr(transport, "_sock", None)
            self._addr = pair.remote_addr if pair else None
        tx = self._dtls._tx_srtp
        if tx is not (self._srtp.session if self._srtp is not None else None):
            self._srtp = None if tx is None else SrtpOut(tx)
        # Set only while both the session and the socket exist.
        self._out = self._srtp if self._sock is not None else None
        return self._out

    def _sendto(self, data: Any) -> bool:
        try:
            self._sock.sendto(data, self._addr)
        except (BlockingIOError, InterruptedError):
            # The socket is not draining: late media is worse than lost media.
            # NACK and PLI recover the loss; a queue would add latency instead.
            self.dropped += 1
            return False
        except OSError:
            return False  # closed underneath us (the connection is going away)
        return True

    def untap(self) -> None:
        """Give datagrams back to aiortc (before the peer connection closes)."""
        if self._tapped:
            self._connection.data_received = self._deliver
            for protocol in self._connection._protocols:
                protocol.__dict__.pop("datagram_received", None)
            self._tapped = False


def pipeline_idle(pc: RTCPeerConnection) -> bool:
    """True when no aiortc decoder thread, encoder task or RTCP task runs for this peer."""
    for transceiver in pc.getTransceivers():
        receiver: Any = transceiver.receiver
        sender: Any = transceiver.sender
        if receiver._RTCRtpReceiver__decoder_thread is not None:
            return False
        if receiver._RTCRtpReceiver__rtcp_task is not None:
            return False
        if (
            sender._RTCRtpSender__rtp_task is not None
            or sender._RTCRtpSender__rtcp_task is not None
        ):
            return False
    return True
