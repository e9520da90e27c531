"""Staff sign-in: argon2id passwords, encrypted cookie sessions, and the role check."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web
from aiohttp_session import get_session, new_session
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.appkeys import ENGINE
from server.permissions import Action, Role, allowed
from server.storage.tables import staff

HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the e-mail is unknown, so both paths cost the same time.
_DUMMY_HASH = HASHER.hash("not-a-real-password")
STAFF_KEY = web.RequestKey("staff", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """The signed-in staff member, as routes see them."""

    id: str
    program_id: str
    role: Role
    display_name: str


async def hash_password(password: str) -> str:
    """argon2id hash, computed off the event loop."""
    return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password without revealing whether the account exists."""

    def check() -> bool:
        try:
            return HASHER.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def sign_in(request: web.Request, email: str, password: str) -> StaffIdentity | None:
    """Verify credentials and start a fresh session; None when they do not match."""
    async with request.app[ENGINE].connect() as conn:
        row = (await conn.execute(sa.select(staff).where(staff.c.email == email.lower()))).first()
    ok = await verify_password(row.password_hash if row else None, password)
    if row is None or not ok or row.disabled:
        return None
    # A new session on sign-in: an identifier planted before sign-in is worthless after it.
    session = await new_session(request)
    session["staff_id"] = row.id
    return StaffIdentity(row.id, row.program_id, Role(row.role), row.display_name)


async def sign_out(request: web.Request) -> None:
    """End the staff session."""
    session = await get_session(request)
    session.invalidate()


async def current_staff(request: web.Request) -> StaffIdentity | None:
    """The signed-in, enabled staff member, or None."""
    cached = request.get(STAFF_KEY)
    if isinstance(cached, StaffIdentity):
        return cached
    session = await get_session(request)
    staff_id = session.get("staff_id")
    if not isinstance(staff_id, str):
        return None
    async with request.app[ENGINE].connect() as conn:
        row = (await conn.execute(sa.select(staff).where(staff.c.id == staff_id))).first()
    if row is None or row.disabled:
        session.invalidate()
        return None
    identity = StaffIdentity(row.id, row.program_id, Role(row.role), row.display_name)
    request[STAFF_KEY] = identity
    return identity


def requires(action: Action) -> Callable[[Handler], Handler]:
    """Refuse the route unless the signed-in staff member's role allows `action`."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            who = await current_staff(request)
            if who is None:
                raise web.HTTPUnauthorized(reason="sign in first")
            if not allowed(who.role, action):
                raise web.HTTPForbidden(reason="your role does not allow this")
            return await handler(request)

        wrapper.required_action = action  # type: ignore[attr-defined]
        return wrapper

    return decorate


def identity(request: web.Request) -> StaffIdentity:
    """The identity a `requires`-guarded route runs as."""
    who = request.get(STAFF_KEY)
    if not isinstance(who, StaffIdentity):
        raise web.HTTPUnauthorized(reason="sign in first")
    return who
