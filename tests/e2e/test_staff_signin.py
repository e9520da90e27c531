"""A clinician's day in a real Chromium: sign in with two steps, see their group, open a record."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from server.appkeys import ENGINE
from server.storage.tables import audit_log
from tests.conftest import RunningServer, browser_sign_in, signed_in, staff_login, totp_code

pytestmark = pytest.mark.e2e


async def _second_group(server: RunningServer, demo: dict[str, Any]) -> None:
    other = next(m for m in demo["staff"] if m["email"].startswith("clinician2"))
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        created = await admin.post(
            "/api/groups",
            json={
                "program_id": demo["program"]["id"],
                "name": "Morning Skills Group",
                "lead_clinician_id": other["id"],
                "schedule": [{"day": "thu", "start": "09:00", "end": "10:30"}],
                "template": "group-90",
                "starts_on": dt.date.today().isoformat(),
            },
        )
        assert created.status == 201


async def test_clinician_signs_in_with_totp_sees_their_group_opens_a_record_and_signs_out(
    server: RunningServer, demo: dict[str, Any], page: Any
) -> None:
    await _second_group(server, demo)
    email, password, secret = staff_login(demo, "clinician")
    await page.goto(server.base_url + "/")
    await page.get_by_role("link", name="Staff sign-in").click()
    await page.get_by_label("Work e-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Continue").click()
    await page.get_by_label("Verification code").fill(totp_code(server, secret))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/dashboard")
    assert await page.get_by_role("heading", name="Hello, Casey Lead (demo)").is_visible()
    group_links = page.get_by_role("region", name="Your groups").get_by_role("link")
    assert await group_links.all_inner_texts() == ["Evening IOP Group A"]
    assert await page.get_by_text("Morning Skills Group").count() == 0

    await group_links.first.click()
    await page.wait_for_url("**/groups/*")
    members = page.get_by_role("region", name="Members (8)").get_by_role("link")
    assert await members.count() == 8
    await page.get_by_role("link", name="Avery").click()
    await page.wait_for_url("**/patients/*")
    assert await page.get_by_role("heading", name="Intake record").is_visible()
    assert await page.get_by_text("101 Example Street").is_visible()
    patient_id = page.url.rsplit("/", 1)[1]
    async with server.app[ENGINE].connect() as conn:
        reads = (
            await conn.execute(
                sa.select(audit_log).where(
                    audit_log.c.action == "patient.phi_read", audit_log.c.target_id == patient_id
                )
            )
        ).all()
    assert len(reads) == 1
    assert reads[0].actor_role == "clinician"

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/signin?signed_out=1")
    assert await page.get_by_text("You are signed out.").is_visible()
    await page.goto(server.base_url + f"/patients/{patient_id}")
    assert "/signin" in page.url
    assert page.errors == []


async def test_an_idle_screen_hides_patient_information_in_the_browser(
    server: RunningServer, demo: dict[str, Any], page: Any
) -> None:
    await page.clock.install()
    await browser_sign_in(page, server, demo)
    patient = demo["groups"][0]["patients"][0]
    await page.goto(server.base_url + f"/patients/{patient['id']}")
    record = page.get_by_role("region", name="Intake record")
    assert await record.evaluate("el => getComputedStyle(el).filter") == "none"
    await page.clock.run_for("16:00")
    banner = page.get_by_role("alert")
    assert "hidden after 15 minutes" in await banner.inner_text()
    assert "blur" in await record.evaluate("el => getComputedStyle(el).filter")
    assert await page.get_by_role("link", name="Unlock").is_visible()
