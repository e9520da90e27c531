"""The patient's private "I need help" in real Chromium windows."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import (
    RunningServer,
    admit_waiting,
    browser_sign_in,
    browser_window,
    consent_group,
)

pytestmark = pytest.mark.e2e


async def test_help_reaches_the_clinician_and_no_other_patient(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{group['patients'][0]['join_session_id']}")
    patients = []
    for patient in group["patients"][:2]:
        page = await browser_window(browser, errors, phone=True)
        await page.goto(patient["join_url"])
        await page.goto(server.base_url + "/room")
        patients.append(page)
    await admit_waiting(clinician, 2)
    asking, other = patients
    await expect(asking.get_by_role("heading", name="Evening IOP Group A")).to_be_visible()
    await asking.get_by_text("I need help (private)").click()
    await asking.get_by_label("Anything you want them to know (optional)").fill("Please call me")
    await asking.get_by_role("button", name="Tell my clinician now").click()
    await expect(asking.get_by_text("Your clinician has been told")).to_be_visible()
    alert = clinician.locator("#help-alerts").get_by_role("alert")
    await expect(alert).to_contain_text("Avery pressed “I need help”: Please call me")
    await other.wait_for_timeout(500)
    assert "Please call me" not in await other.content()
    assert "I need help”" not in await other.content()
    assert errors == []
