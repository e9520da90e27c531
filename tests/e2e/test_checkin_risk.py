"""The check-in's risk paths in real Chromium: a closed tab after a high answer, and a
patient who would rather talk to their clinician than answer the suicide items."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import RunningServer, browser_sign_in, browser_window, give_consents

pytestmark = pytest.mark.e2e
LABELS = {"0": "Not at all", "1": "Several days", "yes": "Yes", "no": "No"}


async def _safety_check(page: Any, server: RunningServer, patient: dict[str, str]) -> None:
    await give_consents(server, patient["id"], patient["join_session_id"])
    await page.goto(patient["join_url"])
    await page.get_by_role("link", name="Go to the waiting room").click()
    await page.get_by_label("Full address (street, city, ZIP)").fill(
        "101 Example Street, Sacramento, CA 95814"
    )
    await page.get_by_label("A phone number we can call you on during this session").fill(
        "(555) 010-0101"
    )
    await page.get_by_role("group", name="Can your support person").get_by_label("Yes").check()
    await page.get_by_role("group", name="private space").get_by_label("Yes").check()
    await page.get_by_role("button", name="Continue").click()
    # The ZIP code read from the end of the address is shown back to be confirmed.
    await expect(page.get_by_label("ZIP code of where you are")).to_have_value("95814")
    await page.get_by_role("button", name="Continue").click()


async def _answer_until(page: Any, answers: dict[str, str], last: str) -> None:
    """Answer screen by screen (by each screen's question id) up to and including `last`."""
    for _ in range(60):
        intro = page.get_by_role("button", name="Continue to the questions")
        await expect(page.get_by_role("button", name="Next").or_(intro)).to_be_visible()
        if await intro.count():  # the introduction before the suicide questions
            await intro.click()
            continue
        qid = await page.locator('input[name="qid"]').get_attribute("value")
        value = answers.get(qid, "no" if qid.startswith("cssrs") else "0")
        label = LABELS.get(value, value)
        await page.get_by_label(label, exact=True).check()
        await page.get_by_role("button", name="Next").click()
        if qid == last:
            return
    raise AssertionError(f"{last} was never asked")


async def test_a_closed_tab_after_saying_yes_to_intent_still_reaches_the_supervisor(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    supervisor = await browser_window(browser, errors)
    await browser_sign_in(supervisor, server, demo, role="supervisor")
    await supervisor.goto(server.base_url + "/supervisor")
    await expect(supervisor.locator("#dash-status")).to_contain_text("Live")

    patient = demo["groups"][0]["patients"][0]
    phone = await browser_window(browser, errors, phone=True)
    await _safety_check(phone, server, patient)
    answers = {"phq9_9": "1", "cssrs_q1": "yes", "cssrs_q2": "yes", "cssrs_q4": "yes"}
    await _answer_until(phone, answers, "cssrs_q4")
    await expect(phone.locator('input[name="qid"]')).to_have_value("cssrs_q5")
    context = phone.context
    await phone.close()  # the patient closes the tab without finishing

    alert = supervisor.get_by_role("alertdialog")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("High-level crisis")
    await expect(alert).to_contain_text("check-in screen")
    await expect(supervisor.locator("#events .event")).to_have_count(1)

    # Opening the check-in again resumes at the next question.
    again = await context.new_page()
    await again.goto(server.base_url + "/checkin")
    await expect(again.locator('input[name="qid"]')).to_have_value("cssrs_q5")
    assert errors == []


async def test_a_patient_who_would_rather_talk_goes_to_the_waiting_room_and_staff_see_why(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    phone = await browser_window(browser, errors, phone=True)
    await _safety_check(phone, server, patient)
    await _answer_until(phone, {"phq9_9": "1"}, "gad7_7")
    # Offered already on the introduction, before any suicide question is shown.
    intro = phone.get_by_role("heading", name="Questions about thoughts of suicide")
    await expect(intro).to_be_visible()
    await phone.get_by_role("button", name="I'd rather talk to my clinician").click()
    await expect(phone.get_by_role("heading", name="Thank you for checking in")).to_be_visible()
    body = await phone.locator("main").inner_text()
    assert "may call you now at (555) 010-0101" in body and "988" in body
    assert "risk" not in body.lower()
    await phone.get_by_role("link", name="Continue to the waiting room").click()
    await expect(phone.get_by_role("heading", name="You are in the waiting room")).to_be_visible()

    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{patient['join_session_id']}")
    waiting = clinician.get_by_role("region", name="Waiting")
    await expect(waiting.get_by_text("Avery")).to_be_visible()
    await expect(waiting.get_by_text("declined the suicide screen")).to_be_visible()
    await expect(waiting.get_by_text("escalation open")).to_be_visible()
    assert errors == []
