"""Request-side authentication: staff sessions, the idle lock, CSRF, and the role check."""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp_session import Session, get_session, new_session
from multidict import MultiDict

from server import audit
from server.accounts import livesockets as staff_sockets
from server.accounts import store as accounts
from server.accounts.permissions import Action, Role, allowed
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.middleware import REQUEST_ID, ApiError, wants_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Session keys. A staff member is signed in only when STAFF_ID is set; PENDING_ID marks a
# password that was accepted while the second factor is still owed.
STAFF_ID = "staff_id"
PENDING_ID = "pending_id"
# The account's session generation when this session began: sign-out, resets and disabling
# move the account on, and a session from an older generation is refused.
GENERATION = "generation"
LAST_ACTIVE = "last_active"
CSRF = "csrf"
PATIENT_LINK = "patient_link"  # the join link this browser entered through
# Requests a page makes on its own (polling, heartbeats) say so, and do not count as activity.
BACKGROUND_HEADER = "X-IOP-Background"


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """The signed-in staff member, as routes see them."""

    id: str
    program_id: str
    role: Role
    display_name: str
    email: str
    locked: bool = False

    @property
    def actor(self) -> audit.Actor:
        """This staff member as an audit actor."""
        return audit.Actor("staff", self.id, self.role.value)


STAFF_KEY = web.RequestKey("staff", StaffIdentity)


# What the WHATWG URL parser removes before it reads a Location header: tabs and newlines
# anywhere, and C0 controls and spaces at either end.
_URL_STRIPPED = "".join(map(chr, range(0x21)))


def _is_control(ch: str) -> bool:
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F


def safe_next(raw: str | None, default: str = "/dashboard") -> str:
    """A local path to return to after sign-in, never another site.

    A browser normalises the Location before reading it: `/<tab>/evil.example` lands on
    `//evil.example`, another site, and so does `/\\evil.example`. Only a value that
    needs no normalisation is accepted, and it must be a single `/` followed by a
    character that is not `/`, `\\`, a space or a control.
    """
    if not raw:
        return default
    browser_reads = raw.replace("\t", "").replace("\n", "").replace("\r", "")
    if browser_reads.strip(_URL_STRIPPED) != raw:
        return default
    if any(_is_control(ch) for ch in raw) or "\\" in raw or not raw.startswith("/"):
        return default
    second = raw[1:2]
    if second and (second == "/" or second.isspace()):
        return default
    return raw


def _redirect_to(path: str, request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?next={quote(request.path_qs, safe='')}")


# CSRF --------------------------------------------------------------------------------------


async def csrf_token(request: web.Request) -> str:
    """This browser session's form token, created on first use."""
    session = await get_session(request)
    token = session.get(CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session[CSRF] = token
    return token


async def _check_csrf(request: web.Request, sent: object) -> None:
    session = await get_session(request)
    expected = session.get(CSRF)
    if not isinstance(expected, str) or not isinstance(sent, str):
        raise web.HTTPBadRequest(reason="This form has expired. Reload the page and try again.")
    if not hmac.compare_digest(expected, sent):
        raise web.HTTPBadRequest(reason="This form has expired. Reload the page and try again.")


async def read_form(request: web.Request) -> MultiDict[str]:
    """A submitted form (text fields only) whose CSRF token matches this session's."""
    form = await request.post()
    await _check_csrf(request, form.get("csrf_token"))
    return MultiDict((key, value) for key, value in form.items() if isinstance(value, str))


async def read_upload(
    request: web.Request, max_bytes: int
) -> tuple[MultiDict[str], dict[str, bytes]]:
    """A multipart form's text fields and files, CSRF-checked, at most `max_bytes` in all.

    Uploads are larger than the 64 KiB every other body may be, so this streams the parts
    and counts them itself instead of going through `request.post()`.
    """
    if request.content_type != "multipart/form-data":
        raise web.HTTPBadRequest(reason="Choose a file to upload.")
    reader = await request.multipart()
    fields: MultiDict[str] = MultiDict()
    files: dict[str, bytes] = {}
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise web.HTTPBadRequest(reason="The form could not be read.")
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            total += len(chunk)
            if total > max_bytes:
                raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=total)
            data += chunk
        if part.filename is not None:
            files[part.name] = bytes(data)
        else:
            fields.add(part.name, data.decode("utf-8", "replace"))
    await _check_csrf(request, fields.get("csrf_token"))
    return fields, files


# Sessions ----------------------------------------------------------------------------------


def _identity(row: Any, locked: bool) -> StaffIdentity:
    return StaffIdentity(
        row.id, row.program_id, Role(row.role), row.display_name, row.email, locked
    )


def _current_generation(session: Session, row: Any) -> bool:
    return row is not None and session.get(GENERATION) == row.session_generation


async def begin_second_factor(request: web.Request, row: Any) -> None:
    """Remember that the password was right; the second factor comes next."""
    session = await new_session(request)
    session[PENDING_ID] = row.id
    session[GENERATION] = row.session_generation
    session[CSRF] = secrets.token_urlsafe(24)


async def pending_staff(request: web.Request) -> Any:
    """The account whose password was accepted and whose second factor is owed, or None."""
    session = await get_session(request)
    staff_id = session.get(PENDING_ID)
    if not isinstance(staff_id, str):
        return None
    async with request.app[ENGINE].connect() as conn:
        row = await accounts.staff_by_id(conn, staff_id)
    if not _current_generation(session, row) or row.disabled:
        return None
    return row


async def complete_sign_in(request: web.Request, row: Any) -> StaffIdentity:
    """Start a fresh staff session: an id planted before sign-in is worthless after it."""
    session = await new_session(request)
    session[STAFF_ID] = row.id
    session[GENERATION] = row.session_generation
    session[LAST_ACTIVE] = request.app[CLOCK].now().timestamp()
    session[CSRF] = secrets.token_urlsafe(24)
    identity = _identity(row, locked=False)
    request[STAFF_KEY] = identity
    return identity


async def sign_out(request: web.Request) -> None:
    """End the staff session, and every other session of the account with it.

    The cookie is only forgotten by this browser; a copy of it is refused because the
    account's session generation moves on. The account's open sockets close too.
    """
    who = await current_staff(request)
    session = await get_session(request)
    session.invalidate()
    if who is None:
        return
    async with request.app[ENGINE].begin() as conn:
        await accounts.end_sessions(conn, who.id)
    await staff_sockets.sessions_ended(request.app, who.id, staff_sockets.SIGNED_OUT)


async def unlock(request: web.Request) -> None:
    """Re-authenticated after the idle lock: count this as activity."""
    session = await get_session(request)
    session[LAST_ACTIVE] = request.app[CLOCK].now().timestamp()


def _is_locked(request: web.Request, session: Session) -> bool:
    last = session.get(LAST_ACTIVE)
    if not isinstance(last, int | float):
        return True
    idle = request.app[SETTINGS].idle_lock_minutes * 60
    return request.app[CLOCK].now().timestamp() - last > idle


async def current_staff(request: web.Request) -> StaffIdentity | None:
    """The signed-in, enabled staff member (with their idle-lock state), or None."""
    cached = request.get(STAFF_KEY)
    if cached is not None:
        return cached
    session = await get_session(request)
    staff_id = session.get(STAFF_ID)
    if not isinstance(staff_id, str):
        return None
    async with request.app[ENGINE].connect() as conn:
        row = await accounts.staff_by_id(conn, staff_id)
    if row is None or row.disabled or not _current_generation(session, row):
        session.invalidate()
        return None
    locked = _is_locked(request, session)
    if not locked and request.headers.get(BACKGROUND_HEADER) != "1":
        session[LAST_ACTIVE] = request.app[CLOCK].now().timestamp()
    identity = _identity(row, locked)
    request[STAFF_KEY] = identity
    return identity


def identity(request: web.Request) -> StaffIdentity:
    """The identity a `requires`-guarded route runs as."""
    who = request.get(STAFF_KEY)
    if who is None:
        raise web.HTTPUnauthorized(reason="sign in first")
    return who


def requires(action: Action, *, phi: bool = False) -> Callable[[Handler], Handler]:
    """Refuse the route unless a signed-in staff member's role allows `action`.

    `phi=True` routes also refuse while the idle lock is on: the screen asks for the
    password again. Nothing else (a live call, an open crisis) is ended by the lock.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            who = await current_staff(request)
            if who is None:
                if wants_json(request):
                    raise web.HTTPUnauthorized(reason="sign in first")
                raise _redirect_to("/signin", request)
            if not allowed(who.role, action):
                raise web.HTTPForbidden(reason="Your role does not allow this.")
            if phi and who.locked:
                if wants_json(request):
                    raise ApiError(423, "locked", "the screen is locked: sign in again to unlock")
                raise _redirect_to("/unlock", request)
            return await handler(request)

        wrapper.access = (action, phi)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def public(handler: Handler) -> Handler:
    """Mark a route as open to anyone, for readers; the matrix test checks what it does."""
    handler.access = "public"  # type: ignore[attr-defined]
    return handler


async def audit_event(
    request: web.Request,
    conn: Any,
    action: str,
    *,
    actor: audit.Actor | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an audit row for this request inside the caller's transaction."""
    if actor is None:
        who = request.get(STAFF_KEY)
        actor = who.actor if who is not None else audit.Actor("anonymous")
    await audit.record(
        conn,
        request.app[KEYRING],
        actor=actor,
        action=action,
        now=request.app[CLOCK].now(),
        target_type=target_type,
        target_id=target_id,
        outcome=outcome,
        request_id=request.get(REQUEST_ID),
        detail=detail,
    )
