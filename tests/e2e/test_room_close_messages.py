"""What the room page says when the server closes its socket, by close code alone.

A revoked join link and a disabled account both closed with 4403 once, and the page told
them apart by the reason text; each now has its own code and its own words.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import (
    RunningServer,
    browser_sign_in,
    browser_window,
    consent_group,
    signed_in,
    staff_login,
)

pytestmark = pytest.mark.e2e
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def test_the_room_page_says_link_revoked_and_account_disabled_apart(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][2]
    room_id = patient["join_session_id"]
    clinician_id = next(m for m in demo["staff"] if m["role"] == "clinician")["id"]
    async with (
        await signed_in(server, *staff_login(demo, "clinician")) as staff,
        await signed_in(server, *staff_login(demo, "admin")) as admin,
    ):
        issued = await staff.post(
            f"/api/patients/{patient['id']}/join-links", json={"standing": True}
        )
        assert issued.status == 201
        link = await issued.json()

        phone = await browser_window(browser, errors, phone=True)
        await phone.goto(link["url"])
        await phone.get_by_role("link", name="Go to the waiting room").click()
        await expect(
            phone.get_by_role("heading", name="You are in the waiting room")
        ).to_be_visible()
        desk = await browser_window(browser, errors)
        await browser_sign_in(desk, server, demo)
        await desk.goto(server.base_url + f"/rooms/{room_id}")
        await expect(
            desk.get_by_role("region", name="Waiting").get_by_text(patient["display_name"])
        ).to_be_visible()

        assert (await staff.delete(f"/api/join-links/{link['id']}")).status == 200
        await expect(
            phone.get_by_text("This link is no longer active. Please call your program")
        ).to_be_visible()

        async with admin.get("/admin/staff") as page:
            token = CSRF.search(await page.text())
        assert token is not None
        disabled = await admin.post(
            f"/admin/staff/{clinician_id}/disable",
            data={"csrf_token": token.group(1)},
            allow_redirects=False,
        )
        assert disabled.status == 303
        await expect(desk.get_by_text("This account has been disabled.")).to_be_visible()
        await expect(phone.get_by_text("This account has been disabled.")).to_have_count(0)
        await expect(desk.get_by_text("signed out")).to_have_count(0)
    assert errors == []
