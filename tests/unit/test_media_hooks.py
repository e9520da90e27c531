"""The aiortc internals rooms/media/hooks.py relies on are still where it expects them.

If an aiortc or aioice upgrade fails here, read hooks.py before changing the pin.
"""

from __future__ import annotations

import inspect

import aioice.ice
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
