"""Handout pages: the program library, one handout's versions and attachments, reading.

Clinicians and admins keep the library (admins any program's, clinicians their own) and
attach handouts to template phases or to sessions they run. Reading is for the program's
staff and for its patients through their join link: handouts are program material, not
PHI, but nobody outside the program opens them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web

from care.handouts import (
    FORMATS,
    MAX_BYTES,
    HandoutError,
    check_content,
    split_pages,
)
from server.accounts.auth import (
    audit_event,
    csrf_token,
    current_staff,
    identity,
    read_form,
    read_upload,
    requires,
)
from server.accounts.permissions import Action, Role, allowed
from server.accounts.scope import clinician_scope
from server.appkeys import CLOCK, ENGINE, ROOMS
from server.caseload.pages import local_time
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.handouts import store
from server.render import render
from server.roomsocket.access import current_link, patient_session, room_info, staff_role
from server.storage.tables import programs
from server.structure.store import template as load_template
from server.structure.store import templates as load_templates

SESSION_DAYS = 28
# A multipart form carries the file and a few short fields besides.
UPLOAD_LIMIT = MAX_BYTES + 64 * 1024
PDF_POLICY = "default-src 'none'; object-src 'none'; script-src 'none'; sandbox"
NOT_FOUND = "There is no such handout in your program."


def _too_large() -> str:
    return f"That file is too large: a handout may be at most {MAX_BYTES // 1048576} MB."


def _program_of(request: web.Request) -> str:
    who = identity(request)
    wanted = request.query.get("program")
    if wanted and who.role is Role.ADMIN:
        return wanted[:36]
    return who.program_id


async def _own_handout(request: web.Request, conn: Any) -> Any:
    """The handout in the path, if the signed-in clinician or admin may keep it."""
    who = identity(request)
    row = await store.get_handout(conn, request.match_info["handout_id"][:36])
    if row is None or (who.role is not Role.ADMIN and row.program_id != who.program_id):
        raise web.HTTPNotFound(reason=NOT_FOUND)
    return row


async def _read_upload(request: web.Request) -> tuple[Any, dict[str, bytes]]:
    if request.content_type != "multipart/form-data":
        # Markdown typed into a form without a file (the 64 KiB body limit applies).
        return await read_form(request), {}
    try:
        return await read_upload(request, UPLOAD_LIMIT)
    except web.HTTPRequestEntityTooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BYTES, actual_size=MAX_BYTES + 1, reason=_too_large()
        ) from None


def _content(fields: Any, files: dict[str, bytes]) -> tuple[str, bytes]:
    """The format and bytes of an upload: a file (PDF or Markdown) or Markdown typed in."""
    data = files.get("file", b"")
    if data:
        fmt = fields.get("format", "")
        if fmt not in FORMATS:
            raise HandoutError("invalid_format", "Say whether the file is a PDF or Markdown.")
        return fmt, data
    text = fields.get("markdown", "")
    if text.strip():
        return "markdown", text.replace("\r\n", "\n").encode("utf-8")
    raise HandoutError("empty", "Choose a PDF or Markdown file, or write the handout.")


async def _refresh_rooms(request: web.Request) -> None:
    """Live rooms on this node offer what is attached now (a room elsewhere picks it up
    when it is next built)."""
    hubs = list(request.app[ROOMS])
    if not hubs:
        return
    async with request.app[ENGINE].connect() as conn:
        for hub in hubs:
            hub.handouts.set_shelf(await store.shelf_for_session(conn, hub.room.id))


async def _program_exists(conn: Any, program_id: str) -> None:
    if await conn.scalar(sa.select(programs.c.id).where(programs.c.id == program_id)) is None:
        raise web.HTTPNotFound(reason="There is no such program.")


def _status(exc: HandoutError) -> int:
    return 413 if exc.code == "too_large" else 400


# The library -------------------------------------------------------------------------


async def _library(
    request: web.Request, error: str | None = None, status: int = 200, title: str = ""
) -> web.Response:
    program_id = _program_of(request)
    async with request.app[ENGINE].connect() as conn:
        await _program_exists(conn, program_id)
        found = await store.library(conn, program_id)
    context = {
        "handouts": found,
        "program_query": f"?program={quote(program_id)}"
        if program_id != identity(request).program_id
        else "",
        "error": error,
        "title_value": title,
        "max_mb": MAX_BYTES // 1048576,
        "csrf": await csrf_token(request),
    }
    return await render(request, "handouts.html", context, status)


@requires(Action.HANDOUTS_MANAGE)
async def library_page(request: web.Request) -> web.Response:
    """The program's handouts, and a form for a new one."""
    return await _library(request)


@requires(Action.HANDOUTS_MANAGE)
async def create(request: web.Request) -> web.StreamResponse:
    """A new handout from an uploaded file or typed Markdown: version 1."""
    try:
        fields, files = await _read_upload(request)
    except web.HTTPRequestEntityTooLarge:
        return await _library(request, _too_large(), 413)
    who = identity(request)
    program_id = _program_of(request)
    title = fields.get("title", "")
    try:
        fmt, data = _content(fields, files)
        async with request.app[ENGINE].begin() as conn:
            await _program_exists(conn, program_id)
            handout_id = await store.create_handout(
                conn, program_id, title, fmt, data, who.id, request.app[CLOCK].now()
            )
            await audit_event(
                request,
                conn,
                "handout.created",
                target_type="handout",
                target_id=handout_id,
                detail={"version": 1, "format": fmt, "size": len(data)},
            )
    except HandoutError as exc:
        return await _library(request, exc.reason, _status(exc), title)
    raise web.HTTPSeeOther(f"/handouts/{handout_id}")


# One handout -------------------------------------------------------------------------


async def _sessions(conn: Any, request: web.Request, program_id: str) -> list[dict[str, Any]]:
    """The coming sessions the caller runs (admins: the program's), to attach to."""
    who = identity(request)
    now = request.app[CLOCK].now()
    tz = await conn.scalar(sa.select(programs.c.time_zone).where(programs.c.id == program_id))
    found = await catalog_schedule.list_sessions(
        conn,
        program_id,
        now - dt.timedelta(hours=4),
        now + dt.timedelta(days=SESSION_DAYS),
        clinician_scope(who),
    )
    return [
        {
            "id": s["id"],
            "label": f"{'Group' if s['kind'] == 'group' else 'One-on-one'} "
            f"{local_time(s['starts_at'], tz or 'America/Los_Angeles'):%a %b %-d, %-I:%M %p}",
        }
        for s in found
        if s["state"] not in ("cancelled", "ended")
    ]


async def _handout(
    request: web.Request, error: str | None = None, status: int = 200
) -> web.Response:
    async with request.app[ENGINE].connect() as conn:
        row = await _own_handout(request, conn)
        versions = await store.versions(conn, row.id)
        attached = await store.attachments_of(conn, row.id)
        shipped = await load_templates(conn)
        sessions = await _sessions(conn, request, row.program_id)
    labels = {s["id"]: s["label"] for s in sessions}
    for item in attached:
        starts = item["starts_at"]
        item["session_label"] = labels.get(item["session_id"]) or (
            f"The session of {starts:%Y-%m-%d %H:%M} UTC" if starts else "A session"
        )
    context = {
        "handout": row,
        "versions": versions,
        "attachments": attached,
        "phases": [
            {"value": f"{t.name}/{i}", "label": f"{t.title}: {p.title}"}
            for t in shipped
            for i, p in enumerate(t.phases)
        ],
        "sessions": sessions,
        "phase_titles": sorted({p.title for t in shipped for p in t.phases}),
        "error": error,
        "max_mb": MAX_BYTES // 1048576,
        "csrf": await csrf_token(request),
    }
    return await render(request, "handout.html", context, status)


@requires(Action.HANDOUTS_MANAGE)
async def handout_page(request: web.Request) -> web.Response:
    """A handout's versions (old ones kept), where it is attached, and the forms."""
    return await _handout(request)


@requires(Action.HANDOUTS_MANAGE)
async def add_version(request: web.Request) -> web.StreamResponse:
    """A new upload of this handout: its next version."""
    try:
        fields, files = await _read_upload(request)
    except web.HTTPRequestEntityTooLarge:
        return await _handout(request, _too_large(), 413)
    who = identity(request)
    try:
        fmt, data = _content(fields, files)
        async with request.app[ENGINE].begin() as conn:
            row = await _own_handout(request, conn)
            version = await store.add_version(
                conn, row.id, fmt, data, who.id, request.app[CLOCK].now()
            )
            await audit_event(
                request,
                conn,
                "handout.version_added",
                target_type="handout",
                target_id=row.id,
                detail={"version": version, "format": fmt, "size": len(data)},
            )
    except HandoutError as exc:
        return await _handout(request, exc.reason, _status(exc))
    await _refresh_rooms(request)
    raise web.HTTPSeeOther(f"/handouts/{row.id}")


def _version_choice(raw: str, known: list[int]) -> int | None:
    if raw in ("", "latest"):
        return None
    if not raw.isdigit() or int(raw) not in known:
        raise HandoutError("no_version", "Choose a version of this handout, or “latest”.")
    return int(raw)


async def _target(
    request: web.Request, conn: Any, form: Any, program_id: str
) -> tuple[str | None, str | None, str | None]:
    """(template, session_id, phase) from the attach form, checked."""
    where = form.get("target", "")
    if where == "template":
        name, _, index = form.get("phase", "").partition("/")
        found = await load_template(conn, name) if name else None
        if found is None or not index.isdigit() or int(index) >= len(found.phases):
            raise HandoutError("invalid_phase", "Choose a phase of a session template.")
        return found.name, None, found.phases[int(index)].title
    if where == "session":
        session_id = form.get("session_id", "")[:36]
        found_session = await room_info(conn, session_id) if session_id else None
        who = identity(request)
        if found_session is None or found_session[0].program_id != program_id:
            raise HandoutError("invalid_session", "Choose one of the program's sessions.")
        info, srow = found_session
        if (
            who.role is not Role.ADMIN
            and staff_role(srow, who.program_id, who.id, who.role) is None
        ):
            raise HandoutError("invalid_session", "Choose a session you run.")
        phase = " ".join(form.get("session_phase", "").split()) or None
        if phase is not None:
            plan = await load_template(conn, srow.template)
            titles = [p.title for p in plan.phases] if plan is not None else []
            if phase not in titles:
                raise HandoutError(
                    "invalid_phase",
                    "That session has no phase of that title"
                    + (f" (its phases: {', '.join(titles)})." if titles else "."),
                )
        return None, info.id, phase
    raise HandoutError("invalid_target", "Attach to a template phase or to one session.")


@requires(Action.HANDOUTS_MANAGE)
async def attach(request: web.Request) -> web.StreamResponse:
    """Offer this handout (a version, or the latest) in a template phase or a session."""
    form = await read_form(request)
    who = identity(request)
    try:
        async with request.app[ENGINE].begin() as conn:
            row = await _own_handout(request, conn)
            known = [v["version"] for v in await store.versions(conn, row.id)]
            version = _version_choice(form.get("version", ""), known)
            template, session_id, phase = await _target(request, conn, form, row.program_id)
            attachment_id = await store.attach(
                conn,
                program_id=row.program_id,
                handout_id=row.id,
                version=version,
                template=template,
                session_id=session_id,
                phase=phase,
                by=who.id,
                now=request.app[CLOCK].now(),
            )
            await audit_event(
                request,
                conn,
                "handout.attached",
                target_type="handout",
                target_id=row.id,
                detail={
                    "attachment_id": attachment_id,
                    "version": version,
                    "template": template,
                    "session_id": session_id,
                },
            )
    except HandoutError as exc:
        return await _handout(request, exc.reason, 400)
    await _refresh_rooms(request)
    raise web.HTTPSeeOther(f"/handouts/{row.id}")


@requires(Action.HANDOUTS_MANAGE)
async def detach(request: web.Request) -> web.StreamResponse:
    """Stop offering the handout there (the handout and its versions stay)."""
    await read_form(request)
    async with request.app[ENGINE].begin() as conn:
        row = await _own_handout(request, conn)
        attachment_id = request.match_info["attachment_id"][:36]
        if not await store.detach(conn, row.id, attachment_id):
            raise web.HTTPNotFound(reason="That handout is not attached there.")
        await audit_event(
            request,
            conn,
            "handout.detached",
            target_type="handout",
            target_id=row.id,
            detail={"attachment_id": attachment_id},
        )
    await _refresh_rooms(request)
    raise web.HTTPSeeOther(f"/handouts/{row.id}")


# Reading: the program's staff and patients ------------------------------------------


async def _readable(request: web.Request) -> tuple[Any, Any]:
    """The handout and version in the path, if the caller belongs to its program."""
    raw_version = request.match_info["version"]
    if not raw_version.isdigit() or len(raw_version) > 6:
        raise web.HTTPNotFound(reason="There is no such version of this handout.")
    async with request.app[ENGINE].connect() as conn:
        row = await store.get_handout(conn, request.match_info["handout_id"][:36])
        who = await current_staff(request)
        if who is not None:
            program_id = None if who.role is Role.ADMIN else who.program_id
        else:
            link = await current_link(request, conn)
            if link is None:
                raise web.HTTPUnauthorized(reason="Open the link your program sent you.")
            patient = await catalog_patients.get_patient_row(conn, link.patient_id)
            program_id = patient.program_id
        if row is None or (program_id is not None and row.program_id != program_id):
            raise web.HTTPNotFound(reason=NOT_FOUND)
        version = await store.version_content(conn, row.id, int(raw_version))
        if version is None:
            raise web.HTTPNotFound(reason="There is no such version of this handout.")
    return row, version


def _page_number(request: web.Request, pages: int) -> int:
    raw = request.query.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= pages:
        raise web.HTTPBadRequest(reason=f"This handout has pages 1 to {pages}.")
    return int(raw)


async def read_page(request: web.Request) -> web.Response:
    """One page of a handout, phone-sized; a PDF is a link to the browser's viewer."""
    row, version = await _readable(request)
    base = f"/handouts/{row.id}/v/{version.version}"
    who = await current_staff(request)
    if who is None:
        back = "/my/handouts"
    elif allowed(who.role, Action.HANDOUTS_MANAGE):
        back = f"/handouts/{row.id}"
    else:
        back = "/dashboard"
    context: dict[str, Any] = {"handout": row, "version": version, "base": base, "back": back}
    if version.format == "markdown":
        pages = split_pages(version.content.decode("utf-8"))
        number = _page_number(request, len(pages))
        context |= {"page": pages[number - 1], "number": number, "pages": len(pages)}
    return await render(request, "handout_read.html", context)


async def read_pages(request: web.Request) -> web.Response:
    """Every page of a Markdown handout as JSON, for the room's reader."""
    row, version = await _readable(request)
    base = f"/handouts/{row.id}/v/{version.version}"
    body: dict[str, Any] = {
        "handout_id": row.id,
        "version": version.version,
        "title": row.title,
        "format": version.format,
        "file": f"{base}/file" if version.format == "pdf" else None,
        "page_url": base,
        "pages": [],
    }
    if version.format == "markdown":
        body["pages"] = [
            {"title": p.title, "html": p.html} for p in split_pages(version.content.decode("utf-8"))
        ]
    return web.json_response(body)


async def read_file(request: web.Request) -> web.Response:
    """A PDF version's bytes, for the browser's own viewer and nothing else."""
    row, version = await _readable(request)
    if version.format != "pdf":
        raise web.HTTPNotFound(reason="This handout is text: open it as pages.")
    try:
        data = check_content("pdf", bytes(version.content))
    except HandoutError:
        raise web.HTTPNotFound(reason="This handout cannot be opened.") from None
    filename = quote(f"{row.title[:60]}-v{version.version}.pdf")
    return web.Response(
        body=data,
        headers={
            "Content-Type": "application/pdf",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f"inline; filename*=UTF-8''{filename}",
            "Content-Security-Policy": PDF_POLICY,
        },
    )


async def my_handouts(request: web.Request) -> web.Response:
    """The patient's handouts for their current or next session, from their link."""
    _link, session_id = await patient_session(request)
    async with request.app[ENGINE].connect() as conn:
        shelf = await store.shelf_for_session(conn, session_id)
    return await render(request, "my_handouts.html", {"shelf": shelf, "patient_page": True})


def add_routes(app: web.Application) -> None:
    """Register the handout pages."""
    app.router.add_get("/handouts", library_page)
    app.router.add_post("/handouts", create)
    app.router.add_get("/handouts/{handout_id}", handout_page)
    app.router.add_post("/handouts/{handout_id}/versions", add_version)
    app.router.add_post("/handouts/{handout_id}/attachments", attach)
    app.router.add_post("/handouts/{handout_id}/attachments/{attachment_id}/delete", detach)
    app.router.add_get("/handouts/{handout_id}/v/{version}", read_page)
    app.router.add_get("/handouts/{handout_id}/v/{version}/pages", read_pages)
    app.router.add_get("/handouts/{handout_id}/v/{version}/file", read_file)
    app.router.add_get("/my/handouts", my_handouts)
