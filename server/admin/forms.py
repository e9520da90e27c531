"""What the admin pages share: reading a form, its errors by field, the viewer's programs."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict
from pydantic import BaseModel, ValidationError

from server.accounts.auth import identity
from server.accounts.scope import program_scope
from server.appkeys import ENGINE
from server.catalog import store as catalog

TIME_ZONES = (
    "America/Los_Angeles",
    "America/Denver",
    "America/Phoenix",
    "America/Chicago",
    "America/New_York",
    "America/Anchorage",
    "Pacific/Honolulu",
)
Errors = dict[str, str]


def field_errors(exc: ValidationError) -> Errors:
    """Validation errors keyed by form field name (nested fields joined by "_")."""
    errors: Errors = {}
    for err in exc.errors(include_input=False, include_url=False):
        parts = [str(part) for part in err["loc"] if not isinstance(part, int)]
        name = "_".join(parts) or "form"
        message = err["msg"].removeprefix("Value error, ")
        errors.setdefault(name, message)
    return errors


def validate(model: type[BaseModel], data: dict[str, Any]) -> tuple[Any, Errors]:
    """The validated model, or None and the errors by field."""
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        return None, field_errors(exc)


def blank_to_none(form: MultiDict[str], *names: str) -> dict[str, Any]:
    """The named fields, stripped, with blanks as None."""
    return {name: (form.get(name, "").strip() or None) for name in names}


async def visible_programs(request: web.Request) -> list[dict[str, Any]]:
    """The programs the viewer may manage."""
    async with request.app[ENGINE].connect() as conn:
        return await catalog.list_programs(conn, program_scope(identity(request)))


def cadence_from(form: MultiDict[str]) -> dict[str, Any] | None:
    """Days between instruments from a form; blank fields keep the default (None if all are)."""
    found: dict[str, Any] = {}
    for name in ("phq9", "gad7", "cssrs"):
        raw = form.get(f"screening_cadence_{name}", "").strip()
        if raw:
            found[name] = int(raw) if raw.isdigit() else raw
    return found or None
