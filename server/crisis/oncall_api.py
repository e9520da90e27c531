"""The on-call roster and each program's crisis settings (escalation policy, webhook), as JSON.

Storage is oncall.py's; these routes check input and roles and audit what changes.
"""

import datetime as dt
import ipaddress
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import Field, field_validator

from crisis.routing import PolicyError, policy_from_json, policy_to_json
from server.accounts.auth import audit_event, identity, requires
from server.accounts.permissions import Action, Role
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.catalog.api import parse_body
from server.catalog.schemas import Id, Strict
from server.crisis import oncall
from server.logs import get_logger
from server.middleware import ApiError

log = get_logger(__name__)


class ShiftIn(Strict):
    program_id: Id
    role: Literal["primary", "backup", "medical_director"]
    staff_id: Id
    starts_at: dt.datetime
    ends_at: dt.datetime

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("must include a time zone offset")
        return value


class SettingsIn(Strict):
    policy: dict[str, Any] | None = None
    webhook_url: str | None = Field(default=None, max_length=500)
    webhook_secret: str | None = Field(default=None, min_length=16, max_length=200)
    clear_webhook: bool = False


# Roster ------------------------------------------------------------------------------------


@requires(Action.ONCALL_READ)
async def list_shifts(request: web.Request) -> web.Response:
    """Current and future on-call shifts, and who is on call now."""
    who = identity(request)
    now = request.app[CLOCK].now()
    program_id = request.query.get("program_id")
    if who.role is not Role.ADMIN:
        program_id = who.program_id
    async with request.app[ENGINE].connect() as conn:
        found = await oncall.shifts(conn, program_id, now)
        current = await oncall.on_call(conn, program_id, now) if program_id else None
    return web.json_response({"shifts": found, "on_call_now": current})


@requires(Action.ONCALL_MANAGE)
async def add_shift(request: web.Request) -> web.Response:
    """Put someone on call."""
    body = await parse_body(request, ShiftIn)
    who = identity(request)
    try:
        async with request.app[ENGINE].begin() as conn:
            record = await oncall.add_shift(
                conn,
                program_id=body.program_id,
                role=body.role,
                staff_id=body.staff_id,
                starts_at=body.starts_at,
                ends_at=body.ends_at,
                created_by=who.id,
                now=request.app[CLOCK].now(),
            )
            await audit_event(
                request,
                conn,
                "oncall.shift_added",
                target_type="oncall_shift",
                target_id=record["id"],
            )
    except oncall.RosterError as exc:
        raise ApiError(
            exc.status, "invalid_input", exc.reason, [{"field": exc.field, "message": exc.reason}]
        ) from None
    return web.json_response(record, status=201)


@requires(Action.ONCALL_MANAGE)
async def remove_shift(request: web.Request) -> web.Response:
    """Take a shift off the roster."""
    shift_id = request.match_info["shift_id"]
    async with request.app[ENGINE].begin() as conn:
        program_id = await oncall.remove_shift(conn, shift_id)
        if program_id is None:
            raise web.HTTPNotFound(reason="no such shift")
        await audit_event(
            request, conn, "oncall.shift_removed", target_type="oncall_shift", target_id=shift_id
        )
    return web.json_response({"id": shift_id, "removed": True})


# Settings ----------------------------------------------------------------------------------


def _check_webhook_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme == "https" and parts.hostname:
        return raw
    # Plain HTTP only to this machine (a local relay, or a test receiver).
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "http" and loopback:
        return raw
    message = "must be an https:// URL (http:// only to this machine)"
    raise ApiError(422, "invalid_input", message, [{"field": "webhook_url", "message": message}])


@requires(Action.CRISIS_CONFIGURE)
async def get_settings(request: web.Request) -> web.Response:
    """A program's escalation policy and whether a webhook is set."""
    program_id = request.match_info["program_id"]
    async with request.app[ENGINE].connect() as conn:
        if not await oncall.program_exists(conn, program_id):
            raise web.HTTPNotFound(reason="no such program")
        view = await oncall.settings_view(conn, program_id)
    return web.json_response(view)


@requires(Action.CRISIS_CONFIGURE)
async def put_settings(request: web.Request) -> web.Response:
    """Set a program's escalation policy and/or webhook (URL and secret together)."""
    body = await parse_body(request, SettingsIn)
    program_id = request.match_info["program_id"]
    if body.policy is None and body.webhook_url is None and not body.clear_webhook:
        raise ApiError(422, "invalid_input", "send policy, webhook_url, or clear_webhook")
    if (body.webhook_url is None) != (body.webhook_secret is None):
        message = "webhook_url and webhook_secret are set together"
        raise ApiError(
            422, "invalid_input", message, [{"field": "webhook_secret", "message": message}]
        )
    policy = None
    if body.policy is not None:
        try:
            policy = policy_to_json(policy_from_json(body.policy))
        except PolicyError as exc:
            raise ApiError(
                422,
                "invalid_input",
                exc.reason,
                [{"field": f"policy.{exc.field}", "message": exc.reason}],
            ) from None
    url = _check_webhook_url(body.webhook_url) if body.webhook_url is not None else None
    async with request.app[ENGINE].begin() as conn:
        if not await oncall.program_exists(conn, program_id):
            raise web.HTTPNotFound(reason="no such program")
        await oncall.save_settings(
            conn,
            request.app[KEYRING],
            program_id,
            policy=policy,
            webhook_url=url,
            webhook_secret=body.webhook_secret,
            clear_webhook=body.clear_webhook,
            updated_by=identity(request).id,
            now=request.app[CLOCK].now(),
        )
        await audit_event(
            request, conn, "crisis.settings_changed", target_type="program", target_id=program_id
        )
        view = await oncall.settings_view(conn, program_id)
    return web.json_response(view)


def add_routes(app: web.Application) -> None:
    """Register the roster and settings API."""
    app.router.add_get("/api/crisis/oncall", list_shifts)
    app.router.add_post("/api/crisis/oncall", add_shift)
    app.router.add_delete("/api/crisis/oncall/{shift_id}", remove_shift)
    app.router.add_get("/api/crisis/settings/{program_id}", get_settings)
    app.router.add_put("/api/crisis/settings/{program_id}", put_settings)
