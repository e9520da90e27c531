"""The private "I need help" on a check-in screen, in real Chromium windows."""

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


async def test_help_pressed_on_a_suicide_question_reaches_the_supervisor_and_keeps_the_page(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    group = demo["groups"][0]
    patient = group["patients"][0]
    await give_consents(server, patient["id"], patient["join_session_id"])
    supervisor = await browser_window(browser, errors)
    await browser_sign_in(supervisor, server, demo, role="supervisor")
    await supervisor.goto(server.base_url + "/supervisor")
    await expect(supervisor.locator("#dash-status")).to_contain_text("Live")

    phone = await browser_window(browser, errors, phone=True)
    await phone.goto(patient["join_url"])
    await phone.goto(server.base_url + "/checkin")
    await phone.get_by_label("Full address (street, city, ZIP)").fill(
        "15991 Red Hill Ave, Tustin, CA 92780"
    )
    await phone.get_by_label("ZIP code of where you are").fill("92780")
    await phone.get_by_label("A phone number we can call you on during this session").fill(
        "(555) 010-0101"
    )
    await phone.get_by_role("group", name="Can your support person").get_by_label("Yes").check()
    await phone.get_by_role("group", name="private space").get_by_label("Yes").check()
    await phone.get_by_role("button", name="Continue").click()
    # PHQ-9 item 9 above 0 opens the C-SSRS after the other PHQ-9 and GAD-7 items.
    for _ in range(20):
        text = await phone.locator(".qtext").inner_text()
        answer = "Several days" if "better off dead" in text else "Not at all"
        await phone.get_by_label(answer, exact=True).check()
        await phone.get_by_role("button", name="Next").click()
        if await phone.get_by_role("button", name="Continue to the questions").count():
            break
    await phone.get_by_role("button", name="Continue to the questions").click()
    question = phone.locator(".qtext")
    await expect(question).to_contain_text("wished you were dead")
    await phone.get_by_label("Yes", exact=True).check()  # an answer begun, not yet sent

    # From the keyboard, as a patient who does not want anyone to see them reach for it.
    await phone.locator("#help-box summary").focus()
    await phone.keyboard.press("Enter")
    await phone.get_by_label("Anything you want them to know (optional)").fill("Please call me")
    await phone.get_by_role("button", name="Tell my clinician now").focus()
    await phone.keyboard.press("Enter")
    await expect(phone.get_by_text("Your clinician has been told")).to_be_visible()
    # The screen the patient was on is still there, with their answer as they left it.
    await expect(question).to_contain_text("wished you were dead")
    assert await phone.get_by_label("Yes", exact=True).is_checked()
    assert phone.url.endswith("/checkin")
    help_box = phone.locator(".help-outside")
    await expect(help_box.get_by_role("link", name="911")).to_be_visible()
    await expect(help_box.get_by_role("link", name="988")).to_be_visible()

    alert = supervisor.get_by_role("alertdialog")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("in Evening IOP Group A: pressed “I need help”")
    await expect(supervisor.locator("#events .event")).to_have_count(1)
    assert errors == []
