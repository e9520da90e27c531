"""Rendering pages with what every page's header needs."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from server.appkeys import SETTINGS
from server.auth import STAFF_KEY, csrf_token


async def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render a template with the signed-in staff member and the sign-out form's token."""
    who = request.get(STAFF_KEY)
    page = {
        "nav_staff": who,
        "nav_csrf": await csrf_token(request) if who is not None else "",
        "idle_minutes": request.app[SETTINGS].idle_lock_minutes,
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, page, status=status)
