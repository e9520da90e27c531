"""Staff pages: the dashboard, a group's page, a patient's intake record and join links."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from rooms.schedule import zone
from server.accounts import joinlinks
from server.accounts import linksockets as link_sockets
from server.accounts.auth import audit_event, csrf_token, identity, read_form, requires
from server.accounts.linkissue import issue_for, link_url
from server.accounts.permissions import Action, Role
from server.accounts.scope import clinician_scope, group_visible, patient_visible, program_scope
from server.appkeys import CLOCK, ENGINE, KEYRING
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.consent.pages import staff_consents
from server.family.panel import family_context
from server.homework.pages import group_section, patient_section
from server.logs import get_logger
from server.render import render
from server.techcheck import store as techcheck_store

log = get_logger(__name__)
DASHBOARD_DAYS = 7


def local_time(value: str | dt.datetime, time_zone: str) -> dt.datetime:
    """A stored UTC time in a program's or patient's zone."""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(zone(time_zone))


@requires(Action.DASHBOARD_VIEW)
async def dashboard(request: web.Request) -> web.Response:
    """The staff home: groups and the coming week's sessions within the caller's scope."""
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        groups = await catalog_schedule.list_groups(conn, program_scope(who), clinician_scope(who))
        sessions = await catalog_schedule.list_sessions(
            conn,
            program_scope(who),
            now - dt.timedelta(hours=4),
            now + dt.timedelta(days=DASHBOARD_DAYS),
            clinician_scope(who),
        )
    names = {g["id"]: g["name"] for g in groups}
    zones = {g["id"]: g["time_zone"] for g in groups}
    upcoming = [
        {
            **s,
            "title": names.get(s["group_id"], "One-on-one session"),
            "local": local_time(s["starts_at"], zones.get(s["group_id"], "America/Los_Angeles")),
        }
        for s in sessions
        if s["state"] != "cancelled"
    ]
    return await render(
        request, "dashboard.html", {"who": who, "groups": groups, "sessions": upcoming}
    )


@requires(Action.GROUPS_READ)
async def group_page(request: web.Request) -> web.Response:
    """A group's clinicians, members (display names) and coming sessions."""
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].connect() as conn:
        group = await group_visible(conn, who, request.match_info["group_id"])
        if group is None:
            raise web.HTTPNotFound(reason="There is no such group, or it is not one of yours.")
        staff = {s["id"]: s for s in await catalog.list_staff(conn, group["program_id"])}
        sessions = [
            s
            for s in await catalog_schedule.list_sessions(
                conn, group["program_id"], now - dt.timedelta(hours=4), now + dt.timedelta(days=14)
            )
            if s["group_id"] == group["id"] and s["state"] != "cancelled"
        ]
    members: list[dict[str, Any]] = []
    homework: dict[str, Any] | None = None
    if who.role is not Role.SUPERVISOR:
        async with request.app[ENGINE].begin() as conn:
            names = await catalog_patients.display_names(
                conn, request.app[KEYRING], group["member_ids"]
            )
            checks = await techcheck_store.latest_for(conn, group["member_ids"])
            await audit_event(
                request, conn, "group.roster_viewed", target_type="group", target_id=group["id"]
            )
            homework = await group_section(conn, group, now)
        members = sorted(
            (
                {"id": pid, "display_name": name, "techcheck": checks.get(pid)}
                for pid, name in names.items()
            ),
            key=lambda m: m["display_name"].lower(),
        )
    context = {
        "who": who,
        "group": group,
        "lead": staff.get(group["lead_clinician_id"]),
        "cofacilitator": staff.get(group["cofacilitator_id"] or ""),
        "members": members,
        "member_count": len(group["member_ids"]),
        "homework": homework,
        "csrf": await csrf_token(request),
        "sessions": [
            {**s, "local": local_time(s["starts_at"], group["time_zone"])} for s in sessions
        ],
    }
    return await render(request, "group.html", context)


async def _patient_context(request: web.Request, patient_id: str) -> dict[str, Any]:
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        if not await patient_visible(conn, who, patient_id):
            raise web.HTTPNotFound(
                reason="There is no such patient, or they are not on your caseload."
            )
        patient = await catalog_patients.get_patient(conn, request.app[KEYRING], patient_id)
        await audit_event(
            request,
            conn,
            "patient.phi_read",
            target_type="patient",
            target_id=patient_id,
            detail={"fields": "intake_record"},
        )
        links = await joinlinks.links_of_patient(conn, patient_id)
        upcoming = await joinlinks.patient_sessions(conn, patient_id, now)
        consents = await staff_consents(request, conn, patient_id)
        techcheck = (await techcheck_store.latest_for(conn, [patient_id])).get(patient_id)
        homework = await patient_section(conn, patient_id, now)
        assert patient is not None
        family = await family_context(conn, request.app[KEYRING], patient, now)
        colleagues = [
            s
            for s in await catalog.list_staff(conn, who.program_id)
            if s["id"] != who.id and not s["disabled"]
        ]
    assert patient is not None
    log.info("patient.phi_read", patient_id=patient_id)
    return {
        "who": who,
        "patient": patient,
        "links": [{"row": link, "state": joinlinks.link_state(link, now)} for link in links[:20]],
        "upcoming": [
            {"slot": slot, "local": local_time(slot.starts_at, patient["time_zone"])}
            for slot in upcoming[:10]
        ],
        "can_issue": who.role in (Role.ADMIN, Role.CLINICIAN),
        "consents": consents,
        "techcheck": techcheck,
        "techcheck_local": techcheck.checked_at.astimezone(zone(patient["time_zone"]))
        if techcheck is not None
        else None,
        "clinicians": [s for s in colleagues if s["role"] == "clinician"],
        "homework": homework,
        "family": family,
        "colleagues": colleagues,
        "csrf": await csrf_token(request),
    }


@requires(Action.PATIENTS_READ, phi=True)
async def patient_page(request: web.Request) -> web.Response:
    """A patient's intake record; every view is audited."""
    context = await _patient_context(request, request.match_info["patient_id"])
    return await render(request, "patient.html", context)


@requires(Action.JOIN_LINKS_MANAGE, phi=True)
async def issue_link(request: web.Request) -> web.Response:
    """Issue a join link and show it once."""
    form = await read_form(request)
    patient_id = request.match_info["patient_id"]
    choice = form.get("session_id", "")
    async with request.app[ENGINE].begin() as conn:
        try:
            link = await issue_for(
                request, conn, patient_id, None if choice == "standing" else choice
            )
        except catalog.CatalogError as exc:
            raise web.HTTPBadRequest(reason=f"Could not issue a link: {exc.reason}.") from None
    context = await _patient_context(request, patient_id)
    context["new_link"] = {
        "url": link_url(request, link),
        "expires_local": local_time(link.expires_at, context["patient"]["time_zone"]),
    }
    return await render(request, "patient.html", context, status=201)


@requires(Action.JOIN_LINKS_MANAGE)
async def revoke_link(request: web.Request) -> web.StreamResponse:
    """Revoke a join link; the device using it is signed out at its next request."""
    await read_form(request)
    who = identity(request)
    now = request.app[CLOCK].now()
    async with request.app[ENGINE].begin() as conn:
        row = await joinlinks.get(conn, request.match_info["link_id"])
        if row is None or not await patient_visible(conn, who, row.patient_id):
            raise web.HTTPNotFound(reason="There is no such link.")
        await joinlinks.revoke(conn, row.id, who.id, now)
        await audit_event(
            request, conn, "join_link.revoked", target_type="join_link", target_id=row.id
        )
    await link_sockets.link_revoked(request.app, row.id)
    raise web.HTTPSeeOther(f"/patients/{row.patient_id}")


def add_routes(app: web.Application) -> None:
    """Register the staff pages."""
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/groups/{group_id}", group_page)
    app.router.add_get("/patients/{patient_id}", patient_page)
    app.router.add_post("/patients/{patient_id}/join-links", issue_link)
    app.router.add_post("/join-links/{link_id}/revoke", revoke_link)
