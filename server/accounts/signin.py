"""Signing staff in: password, then the second factor (or its enrolment), then a session."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from server import audit
from server.accounts import livesockets as staff_sockets
from server.accounts import mfa
from server.accounts import store as accounts
from server.accounts.auth import audit_event as audit_request
from server.accounts.auth import (
    begin_second_factor,
    complete_sign_in,
    csrf_token,
    current_staff,
    pending_staff,
    public,
    read_form,
    safe_next,
    sign_out,
    unlock,
)
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.client_address import client_address
from server.logs import get_logger
from server.render import render

log = get_logger(__name__)
ENROL_SECRET = "enrol_secret"
NEXT = "after_sign_in"
THROTTLED = (
    "Too many sign-in attempts. Wait a minute and try again, or ask your administrator to help."
)
MISMATCH = "That e-mail and password do not match an account."
INVITE_GONE = (
    "This invitation has expired or was already used. Ask your administrator for a new one."
)


class Outcome(StrEnum):
    """Where a password check leads."""

    SIGNED_IN = "signed_in"
    SECOND_FACTOR = "second_factor"
    ENROL = "enrol"
    FAILED = "failed"
    THROTTLED = "throttled"


def _actor(row: Any) -> audit.Actor:
    """A staff row as the actor of an audit entry."""
    return audit.Actor("staff", row.id, row.role)


def _limits(request: web.Request) -> accounts.Limits:
    settings = request.app[SETTINGS]
    return accounts.Limits(
        window=dt.timedelta(minutes=settings.signin_window_minutes),
        free_failures=settings.signin_max_failures_account,
        max_delay_s=settings.signin_max_delay_s,
        max_address=settings.signin_max_failures_address,
    )


@dataclass(frozen=True, slots=True)
class Checked:
    """What a password or second-factor check found."""

    outcome: Outcome
    row: Any = None
    method: str | None = None  # second factor: "totp" or "recovery"
    retry_after_s: int = 0  # THROTTLED: when to try again


async def check_password(request: web.Request, email: str, password: str) -> Checked:
    """Verify e-mail and password under the rate limit; say what the account needs next."""
    engine = request.app[ENGINE]
    now = request.app[CLOCK].now()
    attempt = await accounts.begin_attempt(
        engine, email, client_address(request), now, _limits(request)
    )
    row = None
    if attempt.refused:
        outcome = Outcome.THROTTLED
    else:
        async with engine.connect() as conn:
            row = await accounts.staff_by_email(conn, email)
        ok = await accounts.verify_password(row.password_hash if row else None, password)
        outcome = Outcome.FAILED if not ok or row is None or row.disabled else Outcome.ENROL
    if outcome is Outcome.ENROL:
        if row.totp_enrolled_at is not None:
            outcome = Outcome.SECOND_FACTOR
        elif not request.app[SETTINGS].mfa_required:
            log.warning("auth.mfa_relaxed", user_id=row.id, reason="IOP_MFA_REQUIRED is off")
            outcome = Outcome.SIGNED_IN
    async with engine.begin() as conn:
        if outcome in (Outcome.FAILED, Outcome.THROTTLED):
            await audit_request(
                request,
                conn,
                "auth.password",
                target_type="staff" if row is not None else None,
                target_id=row.id if row is not None else None,
                outcome=outcome.value,
            )
            log.info("auth.sign_in_refused", reason=outcome.value)
        else:
            # The password was right. Its failure count stays until the second factor is
            # given too, so knowing the password does not reset the guesses at the code.
            await accounts.attempt_succeeded(conn, attempt)
            if outcome is Outcome.SIGNED_IN:
                await accounts.forget_failures(conn, email, now - _limits(request).window)
            await audit_request(
                request,
                conn,
                "auth.password",
                actor=_actor(row),
                target_type="staff",
                target_id=row.id,
            )
    return Checked(outcome, row, retry_after_s=attempt.retry_after_s)


async def check_second_factor(request: web.Request, row: Any, code: str) -> Checked:
    """Accept a TOTP or recovery code under the rate limit; say which, or why not."""
    engine = request.app[ENGINE]
    now = request.app[CLOCK].now()
    limits = _limits(request)
    attempt = await accounts.begin_attempt(engine, row.email, client_address(request), now, limits)
    kind = None
    async with engine.begin() as conn:
        if attempt.refused:
            outcome = Outcome.THROTTLED
        else:
            kind = await accounts.accept_second_factor(conn, request.app[KEYRING], row, code, now)
            outcome = Outcome.SIGNED_IN if kind else Outcome.FAILED
            if kind is not None:
                await accounts.forget_failures(conn, row.email, now - limits.window)
        await audit_request(
            request,
            conn,
            "auth.second_factor",
            actor=_actor(row),
            target_type="staff",
            target_id=row.id,
            outcome={Outcome.SIGNED_IN: "ok"}.get(outcome, outcome.value),
            detail={"method": kind} if kind else None,
        )
    return Checked(outcome, row, method=kind, retry_after_s=attempt.retry_after_s)


def throttled_response(checked: Checked, response: web.StreamResponse) -> web.StreamResponse:
    """Tell the client when it may try again."""
    if checked.outcome is Outcome.THROTTLED:
        response.headers["Retry-After"] = str(checked.retry_after_s)
    return response


async def record_signed_in(request: web.Request, row: Any) -> None:
    """Audit and log a completed sign-in."""
    async with request.app[ENGINE].begin() as conn:
        await audit_request(
            request,
            conn,
            "auth.signed_in",
            actor=_actor(row),
            target_type="staff",
            target_id=row.id,
        )
    log.info("auth.signed_in", user_id=row.id, role=row.role)


# Pages -----------------------------------------------------------------------------------


@public
async def signin_page(request: web.Request) -> web.Response:
    """The e-mail and password form."""
    session = await get_session(request)
    session[NEXT] = safe_next(request.query.get("next"))
    return await render(request, "signin.html", {"csrf": await csrf_token(request), "email": ""})


@public
async def signin_submit(request: web.Request) -> web.StreamResponse:
    """Check the password and move on to the second factor."""
    form = await read_form(request)
    email = form.get("email", "").strip()[:254]
    password = form.get("password", "")[:256]
    session = await get_session(request)
    after = safe_next(session.get(NEXT))
    checked = await check_password(request, email, password)
    outcome, row = checked.outcome, checked.row
    if outcome in (Outcome.FAILED, Outcome.THROTTLED):
        message = THROTTLED if outcome is Outcome.THROTTLED else MISMATCH
        context = {"csrf": await csrf_token(request), "email": email, "error": message}
        status = 429 if outcome is Outcome.THROTTLED else 400
        return throttled_response(
            checked, await render(request, "signin.html", context, status=status)
        )
    if outcome is Outcome.SIGNED_IN:
        await complete_sign_in(request, row)
        await record_signed_in(request, row)
        raise web.HTTPSeeOther(after)
    await begin_second_factor(request, row)
    (await get_session(request))[NEXT] = after
    raise web.HTTPSeeOther("/signin/code" if outcome is Outcome.SECOND_FACTOR else "/signin/enrol")


@public
async def code_page(request: web.Request) -> web.Response:
    """Ask for the authenticator code (or a recovery code)."""
    if await pending_staff(request) is None:
        raise web.HTTPSeeOther("/signin")
    return await render(request, "signin_code.html", {"csrf": await csrf_token(request)})


@public
async def code_submit(request: web.Request) -> web.StreamResponse:
    """Check the second factor and finish signing in."""
    form = await read_form(request)
    row = await pending_staff(request)
    if row is None:
        raise web.HTTPSeeOther("/signin")
    session = await get_session(request)
    after = safe_next(session.get(NEXT))
    checked = await check_second_factor(request, row, form.get("code", "")[:64])
    if checked.outcome is Outcome.THROTTLED:
        context = {"csrf": await csrf_token(request), "error": THROTTLED}
        return throttled_response(
            checked, await render(request, "signin_code.html", context, status=429)
        )
    if checked.method is None:
        context = {
            "csrf": await csrf_token(request),
            "error": "That code did not work. Codes change every 30 seconds; try the current one.",
        }
        return await render(request, "signin_code.html", context, status=400)
    await complete_sign_in(request, row)
    await record_signed_in(request, row)
    raise web.HTTPSeeOther(after)


async def _enrolling_staff(request: web.Request) -> Any:
    """The pending account, if it has no second factor yet; otherwise a redirect.

    Enrolment is reached with a password alone: it is only for an account that has no
    second factor (first sign-in, or after an admin reset). An enrolled account goes on
    with its code, whatever page it asks for.
    """
    row = await pending_staff(request)
    if row is None:
        raise web.HTTPSeeOther("/signin")
    if row.totp_enrolled_at is not None:
        session = await get_session(request)
        session.pop(ENROL_SECRET, None)
        raise web.HTTPSeeOther("/signin/code")
    return row


@public
async def enrol_page(request: web.Request) -> web.Response:
    """Show a new TOTP secret as a QR code; the account confirms it with a code."""
    row = await _enrolling_staff(request)
    session = await get_session(request)
    secret = session.get(ENROL_SECRET)
    if not isinstance(secret, str):
        secret = mfa.new_secret()
        session[ENROL_SECRET] = secret
    return await render(
        request, "signin_enrol.html", _enrol_context(secret, row, await csrf_token(request))
    )


def _enrol_context(secret: str, row: Any, csrf: str) -> dict[str, Any]:
    uri = mfa.provisioning_uri(secret, row.email)
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return {"csrf": csrf, "qr": mfa.qr_svg_data_uri(uri), "secret": grouped}


@public
async def enrol_submit(request: web.Request) -> web.StreamResponse:
    """Confirm the authenticator, store the secret, and show recovery codes once."""
    form = await read_form(request)
    row = await _enrolling_staff(request)
    session = await get_session(request)
    secret = session.get(ENROL_SECRET)
    if not isinstance(secret, str):
        raise web.HTTPSeeOther("/signin/enrol")
    now = request.app[CLOCK].now()
    step = mfa.accept_totp(secret, form.get("code", "")[:64], None, now)
    if step is None:
        context = _enrol_context(secret, row, await csrf_token(request))
        context["error"] = (
            "That code did not match. Check the time on your phone and try the current code."
        )
        return await render(request, "signin_enrol.html", context, status=400)
    async with request.app[ENGINE].begin() as conn:
        codes = await accounts.enrol_first_totp(
            conn, request.app[KEYRING], row.id, secret, step, now
        )
        if codes is None:
            # Another browser finished enrolling this account meanwhile.
            session.pop(ENROL_SECRET, None)
            raise web.HTTPSeeOther("/signin/code")
        await audit_request(
            request,
            conn,
            "mfa.enrolled",
            actor=_actor(row),
            target_type="staff",
            target_id=row.id,
        )
    after = safe_next(session.get(NEXT))
    await complete_sign_in(request, row)
    await record_signed_in(request, row)
    return await render(request, "recovery_codes.html", {"codes": codes, "next": after})


@public
async def signout_submit(request: web.Request) -> web.StreamResponse:
    """Sign out and return to the start page."""
    await read_form(request)
    who = await current_staff(request)
    if who is not None:
        async with request.app[ENGINE].begin() as conn:
            await audit_request(
                request, conn, "auth.signed_out", target_type="staff", target_id=who.id
            )
        log.info("auth.signed_out", user_id=who.id)
    await sign_out(request)
    raise web.HTTPSeeOther("/signin?signed_out=1")


@public
async def unlock_page(request: web.Request) -> web.Response:
    """The idle lock: ask for the password again."""
    who = await current_staff(request)
    if who is None:
        raise web.HTTPSeeOther("/signin")
    context = {
        "csrf": await csrf_token(request),
        "who": who,
        "next": safe_next(request.query.get("next")),
    }
    return await render(request, "unlock.html", context)


@public
async def unlock_submit(request: web.Request) -> web.StreamResponse:
    """Unlock with the password; the rate limit applies as at sign-in."""
    form = await read_form(request)
    who = await current_staff(request)
    if who is None:
        raise web.HTTPSeeOther("/signin")
    after = safe_next(form.get("next"))
    checked = await check_password(request, who.email, form.get("password", "")[:256])
    if checked.outcome in (Outcome.FAILED, Outcome.THROTTLED):
        throttled = checked.outcome is Outcome.THROTTLED
        context = {
            "csrf": await csrf_token(request),
            "who": who,
            "next": after,
            "error": THROTTLED if throttled else "That password is not right.",
        }
        return throttled_response(
            checked,
            await render(request, "unlock.html", context, status=429 if throttled else 400),
        )
    await unlock(request)
    raise web.HTTPSeeOther(after)


@public
async def invite_page(request: web.Request) -> web.Response:
    """An invited staff member chooses a password."""
    async with request.app[ENGINE].connect() as conn:
        invite = await accounts.open_invite(
            conn, request.match_info["token"], request.app[CLOCK].now()
        )
    if invite is None:
        raise web.HTTPNotFound(reason=INVITE_GONE)
    return await render(request, "invite.html", {"csrf": await csrf_token(request)})


@public
async def invite_submit(request: web.Request) -> web.StreamResponse:
    """Set the password, then enrol the second factor."""
    form = await read_form(request)
    now = request.app[CLOCK].now()
    password = form.get("password", "")
    error = None
    if len(password) < 12:
        error = "Choose a password of at least 12 characters."
    elif len(password) > 256:
        error = "That password is too long."
    elif password != form.get("confirm", ""):
        error = "The two passwords are not the same."
    if error:
        return await render(
            request, "invite.html", {"csrf": await csrf_token(request), "error": error}, status=400
        )
    password_hash = await accounts.hash_password(password)
    async with request.app[ENGINE].begin() as conn:
        invite = await accounts.open_invite(conn, request.match_info["token"], now)
        if invite is None or not await accounts.accept_invite(
            conn, invite.id, invite.staff_id, password_hash, now
        ):
            raise web.HTTPNotFound(reason=INVITE_GONE)
        row = await accounts.staff_by_id(conn, invite.staff_id)
        await audit_request(
            request,
            conn,
            "staff.invite_accepted",
            actor=_actor(row),
            target_type="staff",
            target_id=row.id,
        )
    # A new password ends the sessions signed in with the old one.
    await staff_sockets.sessions_ended(request.app, row.id, staff_sockets.RESET)
    await begin_second_factor(request, row)
    raise web.HTTPSeeOther("/signin/enrol")


def add_routes(app: web.Application) -> None:
    """Register the sign-in pages."""
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin_submit)
    app.router.add_get("/signin/code", code_page)
    app.router.add_post("/signin/code", code_submit)
    app.router.add_get("/signin/enrol", enrol_page)
    app.router.add_post("/signin/enrol", enrol_submit)
    app.router.add_post("/signout", signout_submit)
    app.router.add_get("/unlock", unlock_page)
    app.router.add_post("/unlock", unlock_submit)
    app.router.add_get("/invite/{token}", invite_page)
    app.router.add_post("/invite/{token}", invite_submit)
