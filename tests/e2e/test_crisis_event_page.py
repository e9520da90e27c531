"""The crisis event page in Chromium: it tells its reader when someone else acts."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import (
    RunningServer,
    browser_sign_in,
    browser_window,
    flag_first_patient,
    give_checkin,
    signed_in,
    staff_login,
)

pytestmark = pytest.mark.e2e


async def test_the_event_page_says_so_when_another_supervisor_acknowledges(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    patient = demo["groups"][0]["patients"][0]
    await give_checkin(server, patient["id"], patient["join_session_id"])
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
    errors: list[str] = []
    page = await browser_window(browser, errors)
    await browser_sign_in(page, server, demo)
    await page.goto(server.base_url + f"/crisis/events/{event_id}")
    await expect(page.locator("#event-state")).to_have_text("open")
    changed = page.locator("#event-changed")
    await expect(changed).to_be_hidden()
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        acked = await supervisor.post(f"/api/crisis/events/{event_id}/ack", json={})
        assert acked.status == 200
    await expect(changed).to_be_visible(timeout=20000)
    await changed.get_by_role("link", name="Show the latest").click()
    await expect(page.locator("#event-state")).to_have_text("acknowledged")
    await expect(page.locator("#event-changed")).to_be_hidden()
    assert errors == []
