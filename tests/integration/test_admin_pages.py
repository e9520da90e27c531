"""Admin pages: forms that validate field by field, and what they change."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from structlog.testing import capture_logs

from tests.conftest import CSRF, RunningServer, signed_in, staff_login, start_server

LOS_ANGELES = ZoneInfo("America/Los_Angeles")


async def _form(
    client: aiohttp.ClientSession, path: str, form: dict[str, Any], page: str | None = None
) -> aiohttp.ClientResponse:
    text = await (await client.get(page or path)).text()
    token = CSRF.search(text)
    assert token is not None
    response = await client.post(
        path, data={"csrf_token": token.group(1), **form}, allow_redirects=False
    )
    await response.read()
    return response


async def test_patient_intake_form_shows_errors_beside_fields_then_saves(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        bad = await _form(
            admin,
            "/admin/patients/new",
            {
                "program_id": demo["program"]["id"],
                "legal_name": "Robin Example",
                "display_name": "Robin",
                "backup_phone": "call me",
                "support_person_name": "Sam",
                "time_zone": "America/Los_Angeles",
            },
        )
        assert bad.status == 400
        text = await bad.text()
        assert 'id="e-backup_phone"' in text
        assert 'id="f-backup_phone" name="backup_phone" type="tel" value="call me"' in text
        assert 'aria-invalid="true"' in text
        assert 'id="e-support_person_relationship"' in text
        good = await _form(
            admin,
            "/admin/patients/new",
            {
                "program_id": demo["program"]["id"],
                "legal_name": "Robin Example",
                "display_name": "Robin",
                "date_of_birth": "1990-04-05",
                "home_address": "5 Example Lane, Fresno, CA 93701",
                "backup_phone": "(555) 010-0155",
                "support_person_name": "Sam Example",
                "support_person_relationship": "partner",
                "support_person_phone": "(555) 010-0156",
                "support_release": "on",
                "preferred_ed": "Example Regional ED",
                "time_zone": "America/Los_Angeles",
            },
        )
        assert good.status == 303
        location = good.headers["Location"]
        record = await (await admin.get(location)).text()
        assert "Sam Example (partner)" in record
        assert "release to contact: signed" in record
        patient_id = location.rsplit("/", 1)[1]
        edited = await _form(
            admin,
            f"/admin/patients/{patient_id}/edit",
            {
                "legal_name": "Robin Example",
                "display_name": "Rob",
                "time_zone": "America/New_York",
            },
        )
        assert edited.status == 303
        after = await (await admin.get(f"/api/patients/{patient_id}")).json()
        assert after["display_name"] == "Rob"
        assert after["support_person"] is None
        assert after["time_zone"] == "America/New_York"


async def test_group_form_creates_a_group_with_members_and_schedule(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    clinicians = [m for m in demo["staff"] if m["role"] == "clinician"]
    patients = demo["groups"][0]["patients"]
    program_id = demo["program"]["id"]
    starts_on = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        path = f"/admin/groups/new?program_id={program_id}"
        missing = await _form(admin, path, {"name": "Thursday group", "starts_on": starts_on})
        assert missing.status == 400
        assert "Some fields need attention" in await missing.text()
        created = await _form(
            admin,
            path,
            {
                "name": "Thursday group",
                "lead_clinician_id": clinicians[1]["id"],
                "cofacilitator_id": clinicians[0]["id"],
                "template": "group-90",
                "time_zone": "America/Los_Angeles",
                "starts_on": starts_on,
                "thu_on": "on",
                "thu_start": "10:00",
                "thu_end": "11:30",
                "member_ids": patients[0]["id"],
            },
        )
        assert created.status == 303, await created.text()
        group_id = created.headers["Location"].rsplit("/", 1)[1]
        groups = (await (await admin.get("/api/groups")).json())["groups"]
        (group,) = [g for g in groups if g["id"] == group_id]
        assert group["schedule"] == [{"day": "thu", "start": "10:00", "end": "11:30"}]
        assert group["member_ids"] == [patients[0]["id"]]
        moved = await _form(
            admin,
            f"/admin/groups/{group_id}/edit",
            {
                "name": "Thursday group",
                "lead_clinician_id": clinicians[1]["id"],
                "template": "group-90",
                "time_zone": "America/Los_Angeles",
                "starts_on": starts_on,
                "fri_on": "on",
                "fri_start": "10:00",
                "fri_end": "11:30",
            },
        )
        assert moved.status == 303
        sessions = await (await admin.get(f"/api/sessions?from={starts_on}&days=14")).json()
        states: dict[str, set[str]] = {}
        for s in sessions["sessions"]:
            if s["group_id"] == group_id:
                local = dt.datetime.fromisoformat(s["starts_at"]).astimezone(LOS_ANGELES)
                states.setdefault(local.strftime("%a"), set()).add(s["state"])
        # Thursdays already scheduled are cancelled, not deleted; Fridays take their place.
        assert states == {"Thu": {"cancelled"}, "Fri": {"scheduled"}}


async def test_program_settings_turn_on_the_date_of_birth_check(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    program_id = demo["program"]["id"]
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        saved = await _form(
            admin,
            f"/admin/programs/{program_id}",
            {
                "name": "Demo Evening IOP (example data)",
                "kind": "mental_health",
                "time_zone": "America/Los_Angeles",
                "phone": "(555) 010-0100",
                "join_link_mode": "standing",
                "join_requires_dob": "on",
            },
        )
        assert saved.status == 303
        (program,) = (await (await admin.get("/api/programs")).json())["programs"]
        assert program["join_requires_dob"] is True
        assert program["join_link_mode"] == "standing"
    async with server.client() as phone:
        landing = await phone.get(demo["groups"][0]["patients"][0]["join_url"])
        assert "Confirm it is you" in await landing.text()


async def test_relaxed_two_step_setting_lets_unenrolled_staff_in_and_says_so(
    tmp_path: Path, sqlite_url: str
) -> None:
    running = await start_server(tmp_path / "d", sqlite_url, {"IOP_MFA_REQUIRED": "false"})
    try:
        demo = await running.seed_demo()
        async with await signed_in(running, *staff_login(demo, "admin")) as admin:
            created = await admin.post(
                "/api/staff",
                json={
                    "program_id": demo["program"]["id"],
                    "email": "relaxed@demo.iop.example",
                    "display_name": "Relaxed",
                    "role": "supervisor",
                    "password": "relaxed password 1",
                },
            )
            assert created.status == 201
        with capture_logs() as logs:
            async with await signed_in(
                running, "relaxed@demo.iop.example", "relaxed password 1"
            ) as relaxed:
                assert (await relaxed.get("/api/groups")).status == 200
        assert any(entry["event"] == "auth.mfa_relaxed" for entry in logs)
    finally:
        await running.runner.cleanup()
