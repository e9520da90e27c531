"""The technology check's connection test: the patient's own media, echoed back through
the forwarding SFU, over `/ws/techcheck`.

The browser opens two peer connections to a small MediaRoom of its own: `send` publishes
the camera and microphone as in a group, `recv` subscribes to them as another member
would. Every packet therefore takes the group's real path (ICE over the configured hosts
or the TURN relay, DTLS-SRTP, the forwarder's per-leg rewrite, its RTCP and REMB cap),
and the browser measures round trip, loss and the bitrate achieved with getStats.

Messages, client to server: `{"type": "answer", "leg": "send"|"recv", "sdp"}` and
`{"type": "bye"}`. Server to client: `{"type": "ready", "ice_servers", "relay_only",
"seconds"}`, `{"type": "offer", "leg", "sdp", "publish", "tracks", "ice_servers"}` (as the room's
`media_offer`) and
`{"type": "error", "code", "reason"}`. A test lives at most ECHO_SECONDS; a second test by
the same patient replaces the first; at most MAX_ECHOES run at once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from rooms.closecodes import CloseCode
from rooms.media.room import MediaError, MediaRoom
from server.appkeys import ENGINE, SETTINGS, SOCKETS
from server.catalog.store import new_id
from server.logs import get_logger
from server.roomsocket import origin as wsorigin
from server.roomsocket.access import current_link
from server.roomsocket.media import ice_servers_now, media_settings

log = get_logger(__name__)
LEGS = ("send", "recv")
ECHO_SECONDS = 45.0
MAX_ECHOES = 8
MAX_MESSAGE_BYTES = 64 * 1024
MAX_ERRORS = 3


@dataclass(eq=False)
class Echo:
    """One patient's running test."""

    patient_id: str
    ws: web.WebSocketResponse
    room: MediaRoom


class EchoTests(dict[str, Echo]):
    """The running tests, by patient id."""


ECHOES = web.AppKey("techcheck_echoes", EchoTests)


class EchoRefused(ValueError):
    """A message the test cannot use: a code and a reason for the page."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Answer:
    """The browser's answer to the offer for one of its two connections."""

    leg: str
    sdp: str


@dataclass(frozen=True, slots=True)
class Bye:
    """The page has its numbers: end the test."""


def parse(text: str) -> Answer | Bye:
    """One client message, or EchoRefused."""
    try:
        data = json.loads(text)
    except ValueError:
        raise EchoRefused("bad_json", "the message is not JSON") from None
    if not isinstance(data, dict):
        raise EchoRefused("bad_message", "a message is a JSON object")
    kind = data.get("type")
    if kind == "bye" and set(data) == {"type"}:
        return Bye()
    if kind == "answer":
        if set(data) != {"type", "leg", "sdp"}:
            raise EchoRefused("bad_message", "an answer has exactly type, leg and sdp")
        leg, sdp = data["leg"], data["sdp"]
        if leg not in LEGS:
            raise EchoRefused("bad_message", "leg must be send or recv")
        if not isinstance(sdp, str) or not 1 <= len(sdp) <= MAX_MESSAGE_BYTES:
            raise EchoRefused("bad_message", "sdp must be a session description")
        return Answer(leg, sdp)
    raise EchoRefused("unknown_type", "only answer and bye are understood")


async def _writer(ws: web.WebSocketResponse, outbox: asyncio.Queue[dict[str, Any]]) -> None:
    while True:
        message = await outbox.get()
        await ws.send_json(message)


async def _run(
    request: web.Request,
    ws: web.WebSocketResponse,
    room: MediaRoom,
    outbox: asyncio.Queue[dict[str, Any]],
) -> None:
    """Offer `send`; once it is answered, offer `recv` its tracks; until bye or the limit."""
    ice_servers = ice_servers_now(request.app)
    settings = request.app[SETTINGS]
    # Everything goes out through the one writer, in order: ready before the first offer.
    outbox.put_nowait(
        {
            "type": "ready",
            "ice_servers": ice_servers,
            "relay_only": settings.ice_force_relay,
            "seconds": ECHO_SECONDS,
        }
    )
    await room.join("send", publishes=True, ice_servers=ice_servers)
    receiving = False
    errors = 0
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            break
        try:
            parsed = parse(message.data)
            if isinstance(parsed, Bye):
                break
            await room.answer(parsed.leg, parsed.sdp)
            if parsed.leg == "send" and not receiving:
                receiving = True
                await room.join("recv", publishes=False, ice_servers=ice_servers)
        except (EchoRefused, MediaError) as exc:
            errors += 1
            with contextlib.suppress(asyncio.QueueFull):
                outbox.put_nowait({"type": "error", "code": exc.code, "reason": exc.reason})
            if errors >= MAX_ERRORS:
                raise EchoRefused("flood", "too many bad messages") from None


async def echo_socket(request: web.Request) -> web.StreamResponse:
    """GET /ws/techcheck: the patient's connection test through the SFU."""
    await wsorigin.check(request)
    async with request.app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
    if link is None:
        raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    echoes = request.app[ECHOES]
    earlier = echoes.pop(link.patient_id, None)
    if earlier is not None:
        # Its own handler closes its media; a tab that went away is not waited for long.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await earlier.ws.close(code=CloseCode.REPLACED, message=b"a newer test started")
    if len(echoes) >= MAX_ECHOES:
        await ws.send_json(
            {"type": "error", "code": "busy", "reason": "the test is busy: try again soon"}
        )
        await ws.close(code=CloseCode.TRY_AGAIN, message=b"too many tests at once")
        return ws
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=32)

    def signal(leg: str, message: dict[str, Any]) -> None:
        if message.get("type") != "media_offer":
            return
        offer = {
            "type": "offer",
            "leg": leg,
            "sdp": message["sdp"],
            "publish": message["publish"],
            "tracks": message["tracks"],
            "ice_servers": message["ice_servers"],
        }
        with contextlib.suppress(asyncio.QueueFull):
            outbox.put_nowait(offer)

    room = MediaRoom(f"techcheck-{new_id()}", signal, settings=media_settings(request.app))
    echo = Echo(link.patient_id, ws, room)
    echoes[link.patient_id] = echo
    request.app[SOCKETS].add(ws)
    writer = asyncio.create_task(_writer(ws, outbox))
    code: int = 1000
    log.info("techcheck.echo_started", patient_id=link.patient_id)
    try:
        async with asyncio.timeout(ECHO_SECONDS):
            await _run(request, ws, room, outbox)
    except TimeoutError:
        log.info("techcheck.echo_time_limit", patient_id=link.patient_id)
    except EchoRefused:
        code = CloseCode.PROTOCOL
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await room.close()
        if echoes.get(link.patient_id) is echo:
            del echoes[link.patient_id]
        request.app[SOCKETS].discard(ws)
        # What the writer had not sent yet (an error's reason) goes out before the close.
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not outbox.empty() and not ws.closed:
                await ws.send_json(outbox.get_nowait())
        await ws.close(code=code)
    return ws


async def _echo_ctx(app: web.Application) -> Any:
    app[ECHOES] = EchoTests()
    yield
    running = list(app[ECHOES].values())
    app[ECHOES].clear()
    for echo in running:
        await echo.room.close()


def setup(app: web.Application) -> None:
    """The echo test's socket, its tests closed with the application."""
    app.cleanup_ctx.append(_echo_ctx)
    app.router.add_get("/ws/techcheck", echo_socket)
