"""Local emergency directory pages: the list, entry forms, CSV import and export, staleness."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from typing import Any

from aiohttp import web
from multidict import MultiDict
from sqlalchemy.exc import IntegrityError

from crisis.directory import (
    EXAMPLE_MARK,
    FIELDS,
    LABELS,
    PHONE_FIELDS,
    DirectoryEntry,
    EntryInvalid,
    LocalEmergencyInfo,
    ResolvedEntry,
    county_key,
    entry_from_text,
    normalize_zip,
    stale_entries,
)
from crisis.directory_import import (
    COLUMNS,
    MAX_CSV_BYTES,
    MAX_CSV_ROWS,
    ImportPlan,
    parse_csv,
    plan_import,
    to_csv,
)
from server.accounts.auth import (
    STAFF_KEY,
    audit_event,
    csrf_token,
    identity,
    read_form,
    read_upload,
    requires,
)
from server.accounts.permissions import Action, allowed
from server.appkeys import CLOCK, ENGINE, KEYRING, SETTINGS
from server.catalog.api import parse_body
from server.catalog.schemas import DirectoryLookupIn
from server.directory import store as directory_store
from server.render import render

TARGET = "directory_entry"
MAX_STALE_DAYS = 3650
# The confirm form carries the file back base64-encoded, with its signature and digest.
MAX_APPLY_BYTES = MAX_CSV_BYTES * 4 // 3 + 16 * 1024


class _Changed(Exception):
    """The plan computed now differs from the one the preview showed."""


def _today(request: web.Request) -> dt.date:
    return request.app[CLOCK].now().date()


def _can_manage(request: web.Request) -> bool:
    who = request.get(STAFF_KEY)
    return who is not None and allowed(who.role, Action.DIRECTORY_MANAGE)


def _row(entry: DirectoryEntry, today: dt.date, stale_days: int) -> dict[str, Any]:
    return {
        "id": entry.id,
        "entry": entry,
        "text": entry.as_text(),
        "age": entry.age_days(today),
        "stale": entry.is_stale(today, stale_days),
    }


# List ----------------------------------------------------------------------------------------


@requires(Action.DIRECTORY_READ)
async def directory_page(request: web.Request) -> web.Response:
    """Every entry, filtered by county and/or ZIP; stale entries show their age."""
    county = request.query.get("county", "").strip()[:64]
    zip_raw = request.query.get("zip", "").strip()
    errors: dict[str, str] = {}
    zip_code: str | None = None
    if zip_raw:
        try:
            zip_code = normalize_zip(zip_raw)
        except ValueError as exc:
            errors["zip"] = str(exc)
    async with request.app[ENGINE].connect() as conn:
        everything = await directory_store.entries(conn)
    found = [
        e
        for e in everything
        if not errors
        and (not county or county_key(e.county) == county_key(county))
        and (zip_code is None or e.zip == zip_code)
    ]
    stale_days = request.app[SETTINGS].directory_stale_days
    today = _today(request)
    context = {
        # Stale rows raise an alert on the page whatever the filter shows (CLINICAL.md 2).
        "stale_count": len(stale_entries(everything, today, stale_days)),
        "rows": [_row(e, today, stale_days) for e in found],
        "values": {"county": county, "zip": zip_raw},
        "errors": errors,
        "stale_days": stale_days,
        "labels": LABELS,
        "example_mark": EXAMPLE_MARK,
        "can_manage": _can_manage(request),
        "notice": _import_notice(request),
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_directory.html", context, 400 if errors else 200)


def _import_notice(request: web.Request) -> str | None:
    added, updated = request.query.get("added", ""), request.query.get("updated", "")
    if added.isdigit() and updated.isdigit():
        return f"Import applied: {added} added, {updated} updated."
    return None


# Entry forms ---------------------------------------------------------------------------------


def _form_values(form: MultiDict[str]) -> dict[str, str]:
    values = {name: form.get(name, "") for name in FIELDS}
    values["example"] = "yes" if form.get("example") == "on" else "no"
    return values


async def _entry_form(
    request: web.Request,
    values: dict[str, Any],
    errors: dict[str, str],
    entry_id: str | None,
    status: int = 200,
) -> web.Response:
    context = {
        "values": {**values, "example": values.get("example") == "yes"},
        "errors": errors,
        "entry_id": entry_id,
        "labels": LABELS,
        "phone_fields": PHONE_FIELDS,
        "example_mark": EXAMPLE_MARK,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_directory_form.html", context, status)


@requires(Action.DIRECTORY_MANAGE)
async def entry_new(request: web.Request) -> web.Response:
    """The form for a new entry."""
    values = {"verified_on": _today(request).isoformat(), "owner": identity(request).display_name}
    return await _entry_form(request, values, {}, None)


@requires(Action.DIRECTORY_MANAGE)
async def entry_create(request: web.Request) -> web.StreamResponse:
    """Save a new entry."""
    values = _form_values(await read_form(request))
    try:
        new = entry_from_text(values, _today(request))
        async with request.app[ENGINE].begin() as conn:
            entry_id = await directory_store.create(
                conn, new, identity(request).id, request.app[CLOCK].now()
            )
            await audit_event(
                request,
                conn,
                "directory.entry_created",
                target_type=TARGET,
                target_id=entry_id,
                detail={"area": new.key},
            )
    except EntryInvalid as exc:
        return await _entry_form(request, values, exc.errors, None, status=400)
    except (directory_store.AreaTaken, IntegrityError):
        errors = {"zip": "this area (state, county, ZIP) has an entry already: edit that one"}
        return await _entry_form(request, values, errors, None, status=400)
    raise web.HTTPSeeOther("/admin/directory")


async def _existing(request: web.Request) -> DirectoryEntry:
    async with request.app[ENGINE].connect() as conn:
        found = await directory_store.entry(conn, request.match_info["entry_id"])
    if found is None:
        raise web.HTTPNotFound(reason="There is no such directory entry.")
    return found


@requires(Action.DIRECTORY_MANAGE)
async def entry_edit(request: web.Request) -> web.Response:
    """The form filled with an entry."""
    found = await _existing(request)
    return await _entry_form(request, found.as_text(), {}, found.id)


@requires(Action.DIRECTORY_MANAGE)
async def entry_update(request: web.Request) -> web.StreamResponse:
    """Save changes to an entry."""
    form = await read_form(request)
    found = await _existing(request)
    assert found.id is not None
    values = _form_values(form)
    try:
        changed = entry_from_text(values, _today(request), entry_id=found.id)
        async with request.app[ENGINE].begin() as conn:
            await directory_store.update(
                conn, found.id, changed, identity(request).id, request.app[CLOCK].now()
            )
            await audit_event(
                request,
                conn,
                "directory.entry_updated",
                target_type=TARGET,
                target_id=found.id,
                detail={"fields": list(changed.changed_fields(found))},
            )
    except EntryInvalid as exc:
        return await _entry_form(request, values, exc.errors, found.id, status=400)
    except (directory_store.AreaTaken, IntegrityError):
        errors = {"zip": "another entry covers this area (state, county, ZIP)"}
        return await _entry_form(request, values, errors, found.id, status=400)
    raise web.HTTPSeeOther("/admin/directory")


@requires(Action.DIRECTORY_MANAGE)
async def entry_delete(request: web.Request) -> web.StreamResponse:
    """Remove an entry."""
    await read_form(request)
    entry_id = request.match_info["entry_id"]
    async with request.app[ENGINE].begin() as conn:
        if not await directory_store.delete(conn, entry_id):
            raise web.HTTPNotFound(reason="There is no such directory entry.")
        await audit_event(
            request, conn, "directory.entry_deleted", target_type=TARGET, target_id=entry_id
        )
    raise web.HTTPSeeOther("/admin/directory")


# CSV import and export -----------------------------------------------------------------------


def _signature(request: web.Request, data: bytes, digest: str) -> str:
    # Binds the confirm form to this staff member, this file and this dry-run result: the
    # apply step writes only what the preview showed.
    key = hmac.new(request.app[KEYRING].session_key, b"directory-import-v1", "sha256").digest()
    message = f"{identity(request).id}\n{hashlib.sha256(data).hexdigest()}\n{digest}"
    return hmac.new(key, message.encode("ascii"), "sha256").hexdigest()


async def _plan(request: web.Request, data: bytes) -> ImportPlan:
    parsed = parse_csv(data, _today(request))
    async with request.app[ENGINE].connect() as conn:
        return plan_import(await directory_store.entries(conn), parsed)


async def _import_page(
    request: web.Request,
    plan: ImportPlan | None,
    data: bytes = b"",
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    digest = plan.digest() if plan is not None else ""
    context = {
        "plan": plan,
        "error": error,
        "columns": COLUMNS,
        "labels": LABELS,
        "max_rows": MAX_CSV_ROWS,
        "max_kb": MAX_CSV_BYTES // 1000,
        "example_mark": EXAMPLE_MARK,
        "payload": base64.b64encode(data).decode("ascii") if plan is not None else "",
        "digest": digest,
        "signature": _signature(request, data, digest) if plan is not None else "",
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_directory_import.html", context, status)


@requires(Action.DIRECTORY_MANAGE)
async def import_page(request: web.Request) -> web.Response:
    """The CSV upload form."""
    return await _import_page(request, None)


@requires(Action.DIRECTORY_MANAGE)
async def import_preview(request: web.Request) -> web.Response:
    """Check an uploaded file and show what it would change; nothing is written yet."""
    _, files = await read_upload(request, MAX_CSV_BYTES + 16 * 1024)
    data = files.get("file")
    if not data:
        return await _import_page(request, None, error="Choose a CSV file to upload.", status=400)
    plan = await _plan(request, data)
    async with request.app[ENGINE].begin() as conn:
        await audit_event(
            request,
            conn,
            "directory.import_previewed",
            outcome="ok" if plan.refused is None and not plan.rejected else "rejected",
            detail=_counts(plan),
        )
    return await _import_page(request, plan, data, status=200 if plan.refused is None else 400)


def _counts(plan: ImportPlan) -> dict[str, int]:
    return {
        "add": len(plan.add),
        "update": len(plan.update),
        "unchanged": len(plan.unchanged),
        "rejected": len(plan.rejected),
    }


@requires(Action.DIRECTORY_MANAGE)
async def import_apply(request: web.Request) -> web.StreamResponse:
    """Apply a previewed file, only if it would still do exactly what the preview showed."""
    fields, _ = await read_upload(request, MAX_APPLY_BYTES)
    try:
        data = base64.b64decode(fields.get("payload", ""), validate=True)
    except (binascii.Error, ValueError):
        raise web.HTTPBadRequest(
            reason="The import could not be read: upload the file again."
        ) from None
    digest = fields.get("digest", "")
    if not data or not hmac.compare_digest(
        _signature(request, data, digest), fields.get("signature", "")
    ):
        raise web.HTTPBadRequest(reason="The import could not be confirmed: upload the file again.")
    now = request.app[CLOCK].now()
    parsed = parse_csv(data, now.date())
    try:
        async with request.app[ENGINE].begin() as conn:
            plan = plan_import(await directory_store.entries(conn), parsed)
            if plan.digest() != digest:
                raise _Changed
            if not plan.applicable:
                raise web.HTTPBadRequest(reason="This file has nothing that can be applied.")
            written = await directory_store.apply_plan(conn, plan, identity(request).id, now)
            for action, entry_id in written:
                await audit_event(
                    request,
                    conn,
                    f"directory.entry_{action}",
                    target_type=TARGET,
                    target_id=entry_id,
                    detail={"source": "csv_import"},
                )
            await audit_event(request, conn, "directory.imported", detail=_counts(plan))
    except (_Changed, directory_store.AreaTaken, IntegrityError):
        raise web.HTTPConflict(
            reason="The directory changed since the preview, so nothing was applied. "
            "Upload the file again to see what it would do now."
        ) from None
    raise web.HTTPSeeOther(f"/admin/directory?added={len(plan.add)}&updated={len(plan.update)}")


@requires(Action.DIRECTORY_READ)
async def export_csv(request: web.Request) -> web.Response:
    """The whole directory as CSV, in the columns and order an import reads."""
    async with request.app[ENGINE].connect() as conn:
        found = await directory_store.entries(conn)
    day = _today(request).isoformat()
    return web.Response(
        text=to_csv(found),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="emergency-directory-{day}.csv"'},
    )


# Staleness -----------------------------------------------------------------------------------


@requires(Action.DIRECTORY_READ)
async def stale_page(request: web.Request) -> web.Response:
    """Entries last verified more than N days ago (N from ?days=, default from settings)."""
    default = request.app[SETTINGS].directory_stale_days
    raw = request.query.get("days", "").strip()
    error = None
    days = default
    if raw:
        if raw.isdigit() and 1 <= int(raw) <= MAX_STALE_DAYS:
            days = int(raw)
        else:
            error = f"days must be a whole number from 1 to {MAX_STALE_DAYS}"
    async with request.app[ENGINE].connect() as conn:
        found = [] if error else await directory_store.entries(conn)
    today = _today(request)
    context = {
        "rows": [
            {**_row(r.entry, today, days), "age": r.age_days}
            for r in stale_entries(found, today, days)
        ],
        "days": raw if error else days,
        "error": error,
        "labels": LABELS,
        "example_mark": EXAMPLE_MARK,
        "can_manage": _can_manage(request),
    }
    return await render(request, "admin_directory_stale.html", context, 400 if error else 200)


# Resolution (JSON) ---------------------------------------------------------------------------


def info_json(info: LocalEmergencyInfo) -> dict[str, Any]:
    """A resolution as the safety panel reads it: local entries, then national numbers."""

    def local(entry_info: ResolvedEntry) -> dict[str, Any]:
        entry = entry_info.entry
        text = entry.as_text()
        return {
            "id": entry.id,
            "matched_by": entry_info.matched_by,
            "area": entry.area,
            "state": entry.state,
            "county": entry.county,
            "zip": entry.zip,
            "phones": {name: getattr(entry, name) for name in PHONE_FIELDS},
            "phones_display": {name: text[name] for name in PHONE_FIELDS},
            "ed_name": entry.ed_name,
            "ed_address": entry.ed_address,
            "owner": entry.owner,
            "verified_on": entry.verified_on.isoformat(),
            "age_days": entry_info.age_days,
            "stale": entry_info.stale,
            "example": entry.example,
            "notice": EXAMPLE_MARK if entry.example else None,
        }

    return {
        "zip": info.zip,
        "county": info.county,
        "state": info.state,
        "found": info.found,
        "local": [local(r) for r in info.local],
        "national": [
            {
                "name": n.name,
                "number": n.number,
                "display": n.display,
                "text": n.text,
                "note": n.note,
            }
            for n in info.national
        ],
    }


@requires(Action.DIRECTORY_READ)
async def api_resolve(request: web.Request) -> web.Response:
    """Local emergency numbers for a location: `{"zip", "county", "state"}` (any of them).

    A POST with a JSON body rather than a GET so that a patient's location never sits in a
    URL (browser history, proxy logs).
    """
    body = await parse_body(request, DirectoryLookupIn)
    async with request.app[ENGINE].connect() as conn:
        info = await directory_store.resolve(
            conn,
            body.zip,
            body.county,
            _today(request),
            state=body.state,
            stale_days=request.app[SETTINGS].directory_stale_days,
        )
    return web.json_response(info_json(info))


def add_routes(app: web.Application) -> None:
    """Register the directory pages and the resolution endpoint."""
    router = app.router
    router.add_get("/admin/directory", directory_page)
    router.add_get("/admin/directory/new", entry_new)
    router.add_post("/admin/directory/new", entry_create)
    router.add_get("/admin/directory/{entry_id}/edit", entry_edit)
    router.add_post("/admin/directory/{entry_id}/edit", entry_update)
    router.add_post("/admin/directory/{entry_id}/delete", entry_delete)
    router.add_get("/admin/directory/import", import_page)
    router.add_post("/admin/directory/import", import_preview)
    router.add_post("/admin/directory/import/apply", import_apply)
    router.add_get("/admin/directory/export.csv", export_csv)
    router.add_get("/admin/directory/stale", stale_page)
    router.add_post("/api/directory/resolve", api_resolve)
