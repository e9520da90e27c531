"""Admin pages for session templates: phases, minutes and kind-specific settings."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from multidict import MultiDict

from rooms.structure import GROUNDING_EXERCISES, PHASE_KINDS, Phase, StructureError, Template
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.permissions import Action
from server.appkeys import CLOCK, ENGINE
from server.render import render
from server.structure.store import save_template, template, templates

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EMPTY_ROWS = 3


@requires(Action.PROGRAMS_MANAGE)
async def templates_page(request: web.Request) -> web.Response:
    """Every session template."""
    async with request.app[ENGINE].connect() as conn:
        found = await templates(conn)
    return await render(request, "admin_templates.html", {"templates": found})


def _rows(found: Template | None) -> list[dict[str, Any]]:
    rows = [
        {
            "kind": p.kind,
            "title": p.title,
            "minutes": p.minutes,
            "exercise": p.settings.get("exercise", ""),
            "turn_seconds": p.settings.get("turn_seconds", ""),
        }
        for p in (found.phases if found else ())
    ]
    return rows + [
        {"kind": "", "title": "", "minutes": "", "exercise": "", "turn_seconds": ""}
        for _ in range(EMPTY_ROWS)
    ]


async def _form(
    request: web.Request,
    name: str,
    title: str,
    rows: list[dict[str, Any]],
    error: str | None,
    status: int = 200,
) -> web.Response:
    context = {
        "name": name,
        "title": title,
        "rows": rows,
        "kinds": PHASE_KINDS,
        "exercises": GROUNDING_EXERCISES,
        "error": error,
        "csrf": await csrf_token(request),
    }
    return await render(request, "admin_template.html", context, status)


@requires(Action.PROGRAMS_MANAGE)
async def template_page(request: web.Request) -> web.Response:
    """One template's phases as an editable table (a new name starts an empty one)."""
    name = request.match_info["name"]
    wanted = request.query.get("name")
    if wanted is not None:  # the "new template" form
        if not NAME.match(wanted):
            raise web.HTTPBadRequest(reason="Use lowercase letters, digits and dashes.")
        raise web.HTTPSeeOther(f"/admin/templates/{wanted}")
    if not NAME.match(name):
        raise web.HTTPNotFound(reason="There is no such template.")
    async with request.app[ENGINE].connect() as conn:
        found = await template(conn, name)
    return await _form(request, name, found.title if found else "", _rows(found), None)


def _parse(form: MultiDict[str]) -> tuple[list[dict[str, Any]], list[Phase]]:
    kinds, titles = form.getall("kind", []), form.getall("title", [])
    minutes, exercises = form.getall("minutes", []), form.getall("exercise", [])
    turns = form.getall("turn_seconds", [])
    rows, phases = [], []
    for kind, title, mins, exercise, turn in zip(
        kinds, titles, minutes, exercises, turns, strict=False
    ):
        rows.append(
            {
                "kind": kind,
                "title": title,
                "minutes": mins,
                "exercise": exercise,
                "turn_seconds": turn,
            }
        )
        if not kind and not title.strip():
            continue  # an empty row
        settings: dict[str, Any] = {}
        if kind == "grounding":
            settings["exercise"] = exercise or "box_breathing"
        if kind == "checkin_round" and turn:
            if not turn.isdigit():
                raise StructureError("turn seconds must be a whole number")
            settings["turn_seconds"] = int(turn)
        if not mins.isdigit():
            raise StructureError(f"“{title or kind}” needs its minutes as a whole number")
        phases.append(Phase(kind, title.strip(), int(mins), settings))
    return rows, phases


@requires(Action.PROGRAMS_MANAGE)
async def template_save(request: web.Request) -> web.StreamResponse:
    """Save a template; sessions already running keep their own plan."""
    form = await read_form(request)
    name = request.match_info["name"]
    if not NAME.match(name):
        raise web.HTTPNotFound(reason="There is no such template.")
    title = form.get("template_title", "").strip()
    rows: list[dict[str, Any]] = []
    try:
        rows, phases = _parse(form)
        if not title:
            raise StructureError("the template needs a title")
        saved = Template(name, title[:120], tuple(phases))
    except StructureError as exc:
        return await _form(request, name, title, rows or _rows(None), str(exc), status=400)
    async with request.app[ENGINE].begin() as conn:
        await save_template(conn, saved, identity(request).id, request.app[CLOCK].now())
        await audit_event(
            request, conn, "template.saved", detail={"template": name, "minutes": saved.minutes}
        )
    raise web.HTTPSeeOther("/admin/templates")


def add_routes(app: web.Application) -> None:
    """Register the template pages."""
    app.router.add_get("/admin/templates", templates_page)
    app.router.add_get("/admin/templates/{name}", template_page)
    app.router.add_post("/admin/templates/{name}", template_save)
