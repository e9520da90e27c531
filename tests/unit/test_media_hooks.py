"""The aiortc internals rooms/media/hooks.py relies on are still where it expects them.

If an aiortc or aioice upgrade fails here, read hooks.py before changing the pin.
"""

from __future__ import annotations

import inspect

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport

from rooms.media import hooks


def test_the_pinned_versions_are_installed() -> None:
    hooks.check_versions()


def test_dtls_keeps_its_srtp_sessions_and_ice_connection_where_the_wire_reads_them() -> None:
    source = inspect.getsource(RTCDtlsTransport)
    assert "self._rx_srtp" in source and "self._tx_srtp" in source
    connection = inspect.getsource(aioice.ice.Connection)
    assert "def data_received(self, data: bytes, component: int)" in connection
    assert "self._nominated" in connection
    # Wire.tap hands RTP/RTCP over from each of the connection's protocols directly.
    assert "self._protocols: list[StunProtocol]" in connection
    protocol = inspect.getsource(aioice.ice.StunProtocol.datagram_received)
    assert "stun.parse_message(data)" in protocol
    assert "self.receiver.data_received(data, self.local_candidate.component)" in protocol
    assert aioice.ice.StunProtocol.__dictoffset__ != 0  # instances take the override
    assert "remote_addr" in inspect.getsource(aioice.ice.CandidatePair)
    assert callable(aioice.ice.get_host_addresses)


async def test_senders_and_receivers_can_be_silenced_and_report_parameters() -> None:
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video", direction="sendonly")
        audio = pc.addTransceiver("audio", direction="recvonly")
        seen: list[object] = []
        hooks.silence_sender(video, seen.append)
        hooks.silence_receiver(audio, seen.append)
        await video.sender.send("parameters")  # type: ignore[arg-type]
        await audio.receiver.receive("parameters")  # type: ignore[arg-type]
        assert seen == ["parameters", "parameters"]
        assert hooks.pipeline_idle(pc)
        assert isinstance(hooks.sender_ssrc(video), int)
        assert hasattr(pc, "_RTCPeerConnection__localRtp")
        assert hasattr(pc, "_RTCPeerConnection__remoteRtp")
        for name in ("_RTCRtpReceiver__decoder_thread", "_RTCRtpReceiver__rtcp_task"):
            assert hasattr(audio.receiver, name)
        for name in ("_RTCRtpSender__rtp_task", "_RTCRtpSender__rtcp_task", "_stream_id"):
            assert hasattr(video.sender, name)
        assert isinstance(video.sender, RTCRtpSender)
        assert isinstance(audio.receiver, RTCRtpReceiver)
    finally:
        await pc.close()


def test_host_addresses_can_be_pinned_to_loopback_and_restored() -> None:
    hooks.use_host_addresses(["127.0.0.1"])
    try:
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    finally:
        hooks.use_host_addresses([])
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


async def test_asyncio_datagram_transports_expose_their_non_blocking_socket() -> None:
    import asyncio
    import socket

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        sock = transport._sock  # type: ignore[attr-defined]
        assert isinstance(sock, socket.socket) and sock.gettimeout() == 0.0
    finally:
        transport.close()


def test_pylibsrtp_keeps_its_context_and_buffer_where_the_wire_protects_in_place() -> None:
    import pylibsrtp
    from pylibsrtp._binding import ffi, lib

    session = pylibsrtp.Session(
        pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    )
    assert ffi.typeof(session._srtp).cname == "struct srtp_ctx_t_ * *"
    assert len(session._buffer) == len(session._cdata) >= 1500
    assert pylibsrtp.SRTP_MAX_TRAILER_LEN == 16 + 128
    # libsrtp 2's in-place signature: (context, packet buffer, length in and out).
    protect = ffi.typeof(lib.srtp_protect)
    assert [a.cname for a in protect.args] == ["struct srtp_ctx_t_ *", "void *", "int *"]


class _Stub:
    """Attribute bag standing in for aiortc/aioice objects the Wire reads."""

    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)


def _wire_to(address: tuple[str, int], key: bytes) -> tuple[hooks.Wire, object]:
    import socket

    import pylibsrtp

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    pair = _Stub(remote_addr=address, protocol=_Stub(transport=_Stub(_sock=sock)))
    connection = _Stub(_nominated={1: pair}, data_received=lambda data, component: None)
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    dtls = _Stub(_tx_srtp=pylibsrtp.Session(policy), transport=_Stub(_connection=connection))
    transceiver = _Stub(sender=_Stub(transport=dtls))
    pc = _Stub(getTransceivers=lambda: [transceiver])
    return hooks.Wire(pc), sock  # type: ignore[arg-type]


@pytest.mark.parametrize("fanout_name", ["c", "python"])
def test_the_wire_sends_what_the_rewrite_would_encrypted_for_the_leg(fanout_name: str) -> None:
    import os
    import socket

    import pylibsrtp

    from rooms.media import rtp
    from tests.unit.loopback_sink import fanout_named

    forward = fanout_named(fanout_name)
    key = os.urandom(30)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    wire, sock = _wire_to(receiver.getsockname(), key)
    inbound = pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    )
    try:
        # A marked VP8 packet with an abs-send-time extension and a 1,100-byte payload.
        source = (
            bytes([0x90, 0x80 | 96])
            + (7).to_bytes(2, "big")
            + (90000).to_bytes(4, "big")
            + (0xAAAA).to_bytes(4, "big")
            + bytes([0xBE, 0xDE, 0, 1, 0x32, 1, 2, 3])
            + os.urandom(1100)
        )
        assert wire.target is None
        target = wire.refresh_target()
        assert target is not None and wire.target is target
        assert forward(source, [(target, 0x80 | 100, 501, 12345, 0xBBBB, b"")]) == 1
        expected = rtp.rewrite(
            source,
            rtp.parse(source),
            payload_type=100,
            sequence=501,
            timestamp=12345,
            ssrc=0xBBBB,
            extensions=None,
        )
        assert inbound.unprotect(receiver.recv(2048)) == expected
        # The general path (a rewritten packet handed over whole) encrypts the same way.
        again = bytearray(expected)
        again[2:4] = (502).to_bytes(2, "big")
        assert wire.send_rtp(again)
        assert inbound.unprotect(receiver.recv(2048)) == bytes(again)
        # Too large for libsrtp's buffer: refused, nothing sent, the wire still works.
        too_large = source + bytes(1500)
        assert forward(too_large, [(target, 0x80 | 100, 503, 12345, 0xBBBB, b"")]) == 0
        assert forward(source, [(target, 0x80 | 100, 504, 12345, 0xBBBB, b"")]) == 1
        assert rtp.parse(inbound.unprotect(receiver.recv(2048))).sequence == 504
        # A newly nominated pair (aioice writes it into the dict) makes the target stale.
        wire._nominated[1] = wire._nominated[1]
        assert wire.target is None
    finally:
        receiver.close()
        sock.close()  # type: ignore[attr-defined]


def test_mids_are_allocated_through_the_function_use_short_mids_replaces() -> None:
    import aiortc.rtcpeerconnection

    source = inspect.getsource(aiortc.rtcpeerconnection.RTCPeerConnection.createOffer)
    assert "allocate_mid(mids)" in source
    hooks.use_short_mids()
    mids: set[str] = set()
    allocated = [hooks.allocate_short_mid(mids) for _ in range(64)]
    assert allocated[:12] == [*"0123456789ab"]
    assert all(len(m) == 1 for m in allocated[:62]) and len(set(allocated)) == 64
    assert allocated[62:] == ["10", "11"]


async def test_a_peer_connections_eleventh_m_line_has_a_one_character_mid() -> None:
    hooks.use_short_mids()
    pc = RTCPeerConnection()
    try:
        for _ in range(12):
            pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        assert [t.mid for t in pc.getTransceivers()][10:] == ["a", "b"]
    finally:
        await pc.close()
