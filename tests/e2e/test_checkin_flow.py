"""The whole check-in on a phone, and a high-risk answer reaching the clinician first."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import (
    RunningServer,
    browser_sign_in,
    browser_window,
    give_consents,
)

pytestmark = pytest.mark.e2e
# PHQ-9 item 9 above 0 opens the C-SSRS; yes to Q4 (intent) makes the screen high risk.
ANSWERS = {
    "Thoughts that you would be better off dead": "Several days",
    "wished you were dead": "Yes",
    "actual thoughts of killing yourself": "Yes",
    "thinking about how you might kill yourself": "No",
    "some intention of acting on them": "Yes",
    "worked out the details": "No",
    "prepared to do anything to end your life": "No",
}


async def _answer(page: Any) -> None:
    intro = page.get_by_role("button", name="Continue to the questions")
    if await intro.count():  # the introduction before the suicide questions
        await intro.click()
        return
    text = await page.locator(".qtext").inner_text()
    choice = next((a for q, a in ANSWERS.items() if q in text), "Not at all")
    await page.get_by_label(choice, exact=True).check()
    await page.get_by_role("button", name="Next").click()


async def test_a_high_risk_check_in_reaches_the_clinician_before_admission(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    await give_consents(server, patient["id"], patient["join_session_id"])
    phone = await browser_window(browser, errors, phone=True)
    await phone.goto(patient["join_url"])
    await phone.get_by_role("link", name="Go to the waiting room").click()
    await expect(phone.get_by_role("heading", name="Before we start")).to_be_visible()
    # Nothing was pre-filled: this is the first session, so there is no "same as last time".
    assert await phone.get_by_label("Full address (street, city, ZIP)").input_value() == ""
    await phone.get_by_label("Full address (street, city, ZIP)").fill(
        "101 Example Street, Sacramento, CA 95814"
    )
    await phone.get_by_label("County (if you know it)").fill("Sacramento")
    await phone.get_by_label("A phone number we can call you on during this session").fill(
        "(555) 010-0101"
    )
    await phone.get_by_role("group", name="Can your support person").get_by_label("Yes").check()
    await phone.get_by_role("group", name="private space").get_by_label("Yes").check()
    await phone.get_by_role("button", name="Continue").click()
    # The ZIP code is read from the end of the address and shown back to be confirmed.
    await expect(phone.get_by_text("Check the ZIP code we read").first).to_be_visible()
    assert await phone.get_by_label("ZIP code of where you are").input_value() == "95814"
    await phone.get_by_role("button", name="Continue").click()

    await expect(phone.get_by_text("Question 1 of")).to_be_visible()
    assert await phone.get_by_label("I prefer not to answer").count() == 1
    for _ in range(60):
        if await phone.get_by_role("heading", name="Thank you for checking in").count():
            break
        await _answer(phone)
    done = phone.get_by_role("heading", name="Thank you for checking in")
    await expect(done).to_be_visible()
    body = await phone.locator("main").inner_text()
    assert "988" in body and "(555) 010-0100" in body
    assert "high" not in body.lower() and "risk" not in body.lower()
    await phone.get_by_role("link", name="Continue to the waiting room").click()
    await expect(phone.get_by_role("heading", name="You are in the waiting room")).to_be_visible()

    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{patient['join_session_id']}")
    waiting = clinician.get_by_role("region", name="Waiting")
    await expect(waiting.get_by_text("Avery")).to_be_visible()
    await expect(waiting.get_by_text("high risk screen")).to_be_visible()
    await expect(waiting.get_by_text("escalation open")).to_be_visible()
    assert errors == []
