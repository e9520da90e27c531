"""The support person's browser session: which support link it entered by, on which device."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from sqlalchemy.ext.asyncio import AsyncConnection

from server.appkeys import CLOCK
from server.family import links

SUPPORT_LINK = "support_link"
SUPPORT_DEVICE = "support_device"


async def current_support_link(request: web.Request, conn: AsyncConnection) -> Any:
    """The support link this browser entered by, if it is active and on this device."""
    session = await get_session(request)
    link_id = session.get(SUPPORT_LINK)
    if not isinstance(link_id, str):
        return None
    row = await links.get(conn, link_id)
    if row is None or row.device_id != session.get(SUPPORT_DEVICE):
        return None
    if links.link_state(row, request.app[CLOCK].now()) != "active":
        return None
    return row
