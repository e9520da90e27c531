"""The patient's private "I need help" on the pages before the room (join, consent, check-in).

In the waiting room and the room the press travels over the room's WebSocket. Before that
there is no socket, so the same press is a plain form POST (a small script sends it in the
background and keeps the page as it is). It enters the crisis path through the same entry
point, as the same high-level concern, and folds into the patient's open event the same way.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.escalation import Concern, raise_concern
from server import audit
from server.accounts import joinlinks
from server.accounts.auth import audit_event, read_form
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.crisis import store as crisis_store
from server.crisis.concerns import SqlConcerns
from server.crisis.publish import transaction
from server.logs import get_logger
from server.render import HELP_BACK, render
from server.roomsocket.access import current_link
from server.storage.tables import audit_log, sessions

log = get_logger(__name__)
PRESSED = "patient.help_pressed"
MAX_TEXT = 280
PRESS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
RATE_WINDOW = dt.timedelta(minutes=1)


async def _presses(conn: AsyncConnection, patient_id: str, session_id: str) -> list[Any]:
    """This patient's earlier presses on these pages for this session (newest first)."""
    return list(
        await conn.execute(
            sa.select(audit_log.c.at, audit_log.c.outcome, audit_log.c.detail)
            .where(
                audit_log.c.target_type == "session",
                audit_log.c.target_id == session_id,
                audit_log.c.action == PRESSED,
                audit_log.c.actor_id == patient_id,
            )
            .order_by(audit_log.c.seq.desc())
        )
    )


def _parse(form: Any) -> tuple[str, str | None, str]:
    text = form.get("text", "").strip()
    if len(text) > MAX_TEXT:
        raise web.HTTPBadRequest(reason=f"Keep the message to {MAX_TEXT} characters.")
    press_id = form.get("press_id", "").strip() or None
    if press_id is not None and not PRESS_ID.fullmatch(press_id):
        raise web.HTTPBadRequest(reason="This press could not be read. Reload the page.")
    back = form.get("back", "/join")
    return text, press_id, back if back in HELP_BACK else "/join"


async def help_press(request: web.Request) -> web.StreamResponse:
    """Raise the patient's help press as a high concern; confirm only once it is stored."""
    form = await read_form(request)
    text, press_id, back = _parse(form)
    app = request.app
    now = app[CLOCK].now()
    async with app[ENGINE].connect() as conn:
        link = await current_link(request, conn)
        session_id = None
        if link is not None:
            session_id = link.session_id
            if session_id is None:
                upcoming = await joinlinks.patient_sessions(conn, link.patient_id, now)
                session_id = upcoming[0].session_id if upcoming else None
    if link is None or session_id is None:
        # Nobody to tell yet (the link was not opened on this device, or there is no
        # session to attach the press to): say so plainly, with the numbers that work.
        phone = "" if link is None else link.program_phone
        context = {"sent": False, "back": back, "program_phone": phone}
        return await render(request, "help_sent.html", context, 401 if link is None else 404)
    patient_id = link.patient_id
    async with transaction(app) as conn:
        earlier = await _presses(conn, patient_id, session_id)
        resent = press_id is not None and any(
            (row.detail or {}).get("press_id") == press_id for row in earlier
        )
        recent = sum(1 for row in earlier if row.outcome == "ok" and row.at > now - RATE_WINDOW)
        folded = (
            recent >= app[SETTINGS].help_presses_per_minute
            and await crisis_store.open_event_for(conn, patient_id, session_id) is not None
        )
        if not resent and not folded:
            ends = await conn.scalar(
                sa.select(sessions.c.ends_at).where(sessions.c.id == session_id)
            )
            concern = Concern(
                patient_id=patient_id,
                session_id=session_id,
                trigger="help_button",
                level="high",
                rule="the patient pressed I need help",
                at=now,
                detail={"page": HELP_BACK[back], **({"message": text} if text else {})},
            )
            await raise_concern(SqlConcerns(conn, app[KEYRING], ends), concern)
        if not resent:
            # Every press is on the record, the folded ones too; the message is not here.
            await audit_event(
                request,
                conn,
                PRESSED,
                actor=audit.Actor("patient", patient_id),
                target_type="session",
                target_id=session_id,
                outcome="folded" if folded else "ok",
                detail={"press_id": press_id, "page": HELP_BACK[back]},
            )
    # Committed: only now is the patient told that their care team has it.
    log.warning(
        "crisis.help_repeated" if resent or folded else "crisis.help_pressed",
        session_id=session_id,
    )
    if request.headers.get("Accept", "").startswith("application/json"):
        body: dict[str, Any] = {"type": "help_received", "at": now.isoformat()}
        if press_id is not None:
            body["press_id"] = press_id
        return web.json_response(body)
    context = {"sent": True, "back": back, "program_phone": link.program_phone}
    return await render(request, "help_sent.html", context)


def add_routes(app: web.Application) -> None:
    """Register the help press for the pages before the room."""
    app.router.add_post("/help", help_press)
