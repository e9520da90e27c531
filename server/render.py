"""Rendering pages with what every page's header needs."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from server.accounts.auth import PATIENT_LINK, STAFF_KEY, csrf_token
from server.appkeys import SETTINGS

# The pages a patient's "I need help" can send them back to (GET routes), by area.
HELP_BACK = {
    "/join": "join",
    "/consent": "consent",
    "/consent/receipts": "consent",
    "/checkin": "checkin",
    "/my/aftercare": "aftercare",
    "/my/safety-plan": "safety_plan",
    "/techcheck": "techcheck",
    "/mood": "mood",
}


def help_back(path: str) -> str:
    """The page to return to after a press made on `path` (a form's POST goes to its page)."""
    if path in HELP_BACK:
        return path
    for prefix in ("/checkin", "/consent"):
        if path.startswith(prefix + "/"):
            return prefix
    return "/join"


async def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render a template with the signed-in staff member and the sign-out form's token, or
    with a patient's "I need help" form."""
    who = request.get(STAFF_KEY)
    page = {
        "nav_staff": who,
        "nav_csrf": await csrf_token(request) if who is not None else "",
        "idle_minutes": request.app[SETTINGS].idle_lock_minutes,
        "help_form": None,
        **context,
    }
    if who is None and isinstance((await get_session(request)).get(PATIENT_LINK), str):
        # Every page a patient reaches through their link carries the private help press.
        page["help_form"] = {"csrf": await csrf_token(request), "back": help_back(request.path)}
    return aiohttp_jinja2.render_template(template, request, page, status=status)
