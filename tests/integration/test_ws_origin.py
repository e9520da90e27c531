"""WebSocket upgrades from another site's page (or from no page at all) are refused."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningServer, consent_group, signed_in, staff_login

EVIL = "https://evil.example"


def _bare(server: RunningServer, jar: aiohttp.abc.AbstractCookieJar) -> aiohttp.ClientSession:
    """A client holding the same cookies that sends no Origin (no page opened it)."""
    return aiohttp.ClientSession(
        base_url=server.base_url,
        connector=aiohttp.TCPConnector(ssl=server.client_ssl()),
        cookie_jar=jar,
    )


async def _status(http: aiohttp.ClientSession, path: str, **kwargs: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(path, **kwargs)
    return refused.value.status


async def test_the_room_socket_opens_only_from_our_own_pages(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await consent_group(server, demo)
    room = f"/ws/rooms/{demo['groups'][0]['patients'][0]['join_session_id']}"
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        assert await _status(clinician, room, origin=EVIL) == 403
        assert await _status(clinician, room, origin="null") == 403
        # Same host, another port or scheme: another origin.
        other_port = server.base_url.rsplit(":", 1)[0] + ":1"
        assert await _status(clinician, room, origin=other_port) == 403
        async with _bare(server, clinician.cookie_jar) as bare:
            assert await _status(bare, room) == 403
        ws = await clinician.ws_connect(room, origin=server.base_url)
        await ws.send_json({"type": "hello", "protocol": 1})
        assert (await ws.receive_json())["type"] == "snapshot"
        await ws.close()
    async with server.client() as phone:
        landing = await phone.get(demo["groups"][0]["patients"][0]["join_url"])
        assert landing.status == 200
        assert await _status(phone, room, origin=EVIL) == 403


async def test_the_dashboard_socket_opens_only_from_our_own_pages(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        assert await _status(supervisor, "/ws/dashboard", origin=EVIL) == 403
        async with _bare(server, supervisor.cookie_jar) as bare:
            assert await _status(bare, "/ws/dashboard") == 403
        ws = await supervisor.ws_connect("/ws/dashboard", origin=server.base_url)
        await ws.send_json({"type": "hello", "protocol": 1})
        assert (await ws.receive_json())["type"] == "snapshot"
        await ws.close()
