"""The consent steps on a phone in a real Chromium, from the join link to the check-in."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import RunningServer

pytestmark = pytest.mark.e2e


async def test_a_patient_consents_step_by_step_on_a_phone_then_checks_in(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    context = await browser.new_context(
        ignore_https_errors=True, viewport={"width": 375, "height": 667}
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(demo["groups"][0]["patients"][0]["join_url"])
        await page.get_by_role("link", name="Go to the waiting room").click()
        titles = []
        for step in (1, 2, 3):
            await expect(page.get_by_text(f"Step {step} of 3")).to_be_visible()
            titles.append(await page.get_by_role("heading", level=1).inner_text())
            # Nothing is accepted until every statement is ticked and the name typed.
            await page.get_by_role("button", name="I agree").click()
            await expect(page.get_by_role("alert")).to_contain_text("tick each statement")
            boxes = page.get_by_role("checkbox")
            for index in range(await boxes.count()):
                await boxes.nth(index).check()
            await page.get_by_label("Type your full name to sign").fill("Avery Example")
            await page.get_by_role("button", name="I agree").click()
        assert titles == [
            "Consent to telehealth",
            "Group agreement: privacy and confidentiality",
            "Emergency plan and support person",
        ]
        await expect(page.get_by_role("heading", name="Before we start")).to_be_visible()
        # Nothing overflows the phone's width.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        await page.goto(server.base_url + "/consent/receipts")
        await page.get_by_role("link", name="Telehealth").click()
        await expect(page.get_by_text("Avery Example")).to_be_visible()
        async with page.expect_download() as download:
            await page.get_by_role("link", name="Download a copy").click()
        assert (await download.value).suggested_filename.startswith("consent-")
        # The only errors are the three refused submissions above (answered 400 on purpose).
        refused = [e for e in errors if "status of 400" in e]
        assert len(refused) == 3 and len(errors) == 3
    finally:
        await context.close()
