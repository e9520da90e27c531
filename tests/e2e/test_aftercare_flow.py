"""Discharge in Chromium: a clinician reads the outcomes table and writes an aftercare plan;
the patient opens it on a phone from their link, downloads it, and opens their safety plan."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import RunningServer, browser_sign_in, browser_window

pytestmark = pytest.mark.e2e


async def test_a_clinician_writes_the_aftercare_plan_and_the_patient_opens_and_keeps_it(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    blake = demo["groups"][0]["patients"][1]
    desk = await browser_window(browser, errors)
    await browser_sign_in(desk, server, demo)
    await desk.get_by_role("link", name="Outcomes (PHQ-9, GAD-7, attendance)").click()
    await expect(desk.get_by_role("heading", name="Outcomes")).to_be_visible()
    row = desk.locator(f'tr[data-patient="{blake["id"]}"]')
    await expect(row.locator(".marker")).to_have_text("not enough scores")
    await desk.get_by_role("link", name="Patient").click()  # sort by name
    await expect(desk.locator("tbody tr").first).to_contain_text("Avery")
    await row.get_by_role("link", name="Aftercare plan").click()
    await expect(
        desk.get_by_role("heading", name="Discharge and aftercare plan: Blake")
    ).to_be_visible()
    await desk.get_by_label("Next level of care").select_option("php")
    await desk.get_by_label("Date 1").fill("2026-13-01")  # a date input refuses it: stays empty
    await desk.get_by_label("Provider or service 1").fill("Example PHP intake (fictional)")
    await desk.get_by_label("Phone 1").fill("555 555 0160")
    await desk.get_by_label("My triggers").fill("Evenings alone")
    await desk.get_by_role("button", name="Save a new version").click()
    # The missing date is named beside its field; what was typed is kept.
    await expect(desk.locator("#e-fu1_date")).to_have_text("enter the date as YYYY-MM-DD")
    await expect(desk.get_by_label("Provider or service 1")).to_have_value(
        "Example PHP intake (fictional)"
    )
    today = await desk.evaluate("new Date().toISOString().slice(0, 10)")
    await desk.get_by_label("Date 1").fill(today)
    await desk.get_by_role("button", name="Save a new version").click()
    await expect(desk.get_by_role("status")).to_contain_text("Saved as version 1")

    phone = await browser_window(browser, errors, phone=True)
    await phone.goto(blake["join_url"])
    await phone.get_by_role("link", name="My aftercare plan").click()
    await expect(phone.get_by_role("heading", name="My aftercare plan")).to_be_visible()
    await expect(phone.get_by_role("link", name="988", exact=True).first).to_be_visible()
    await expect(phone.get_by_text("Partial hospitalization program (PHP)")).to_be_visible()
    await expect(phone.get_by_text("Example PHP intake (fictional)")).to_be_visible()
    assert await phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    async with phone.expect_download() as fetched:
        await phone.get_by_role("link", name="Download my plan").click()
    download = await fetched.value
    assert download.suggested_filename == "aftercare-plan-v1.txt"
    text = await asyncio.to_thread(Path(await download.path()).read_text)
    assert "988" in text and "Evenings alone" in text and "Example PHP intake" in text
    await phone.get_by_role("link", name="Back").click()
    await phone.get_by_role("link", name="My safety plan").click()
    await expect(phone.get_by_role("heading", name="My safety plan")).to_be_visible()
    await expect(phone.get_by_role("link", name="988", exact=True).first).to_be_visible()
    await expect(phone.get_by_text("have not written a safety plan here yet")).to_be_visible()
    assert await phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # The refused form is answered 422 (Chromium logs that status); nothing else went wrong.
    assert [e for e in errors if "422" not in e] == []
