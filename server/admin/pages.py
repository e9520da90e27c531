"""The admin's index and the table of admin routes."""

from __future__ import annotations

from aiohttp import web

from server.accounts.auth import requires
from server.accounts.permissions import Action
from server.admin.groups import group_create, group_edit, group_new, group_update, groups_page
from server.admin.patients import (
    patient_create,
    patient_edit,
    patient_new,
    patient_update,
    patients_page,
)
from server.admin.programs import program_create, program_page, program_update, programs_page
from server.admin.staff import (
    staff_disable,
    staff_enable,
    staff_invite,
    staff_page,
    staff_reinvite,
    staff_reset_mfa,
)
from server.render import render


@requires(Action.PROGRAMS_MANAGE)
async def admin_home(request: web.Request) -> web.Response:
    """The admin's index."""
    return await render(request, "admin_home.html", {})


def add_routes(app: web.Application) -> None:
    """Register the admin pages."""
    router = app.router
    router.add_get("/admin", admin_home)
    router.add_get("/admin/programs", programs_page)
    router.add_post("/admin/programs", program_create)
    router.add_get("/admin/programs/{program_id}", program_page)
    router.add_post("/admin/programs/{program_id}", program_update)
    router.add_get("/admin/staff", staff_page)
    router.add_post("/admin/staff", staff_invite)
    router.add_post("/admin/staff/{staff_id}/disable", staff_disable)
    router.add_post("/admin/staff/{staff_id}/enable", staff_enable)
    router.add_post("/admin/staff/{staff_id}/reset-mfa", staff_reset_mfa)
    router.add_post("/admin/staff/{staff_id}/invite", staff_reinvite)
    router.add_get("/admin/patients", patients_page)
    router.add_get("/admin/patients/new", patient_new)
    router.add_post("/admin/patients/new", patient_create)
    router.add_get("/admin/patients/{patient_id}/edit", patient_edit)
    router.add_post("/admin/patients/{patient_id}/edit", patient_update)
    router.add_get("/admin/groups", groups_page)
    router.add_get("/admin/groups/new", group_new)
    router.add_post("/admin/groups/new", group_create)
    router.add_get("/admin/groups/{group_id}/edit", group_edit)
    router.add_post("/admin/groups/{group_id}/edit", group_update)
