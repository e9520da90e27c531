"""The daily mood check on a phone, and what the clinician sees of it in the room and on the
patient's history page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import (
    RunningServer,
    browser_sign_in,
    browser_window,
    give_checkin,
    give_consents,
)

pytestmark = pytest.mark.e2e


async def test_a_low_daily_check_on_a_phone_reaches_the_clinicians_room_and_history(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    # A group member only (the first patient also has a one-on-one, which may come first).
    patient = demo["groups"][0]["patients"][1]
    await give_consents(server, patient["id"], patient["join_session_id"])
    await give_checkin(server, patient["id"], patient["join_session_id"])
    phone = await browser_window(browser, errors, phone=True)
    await phone.goto(patient["join_url"])
    await phone.get_by_role("link", name="Daily check-in").click()
    await expect(phone.get_by_role("heading", name="Daily check-in")).to_be_visible()
    await expect(phone.locator(".crisis-line").get_by_role("link", name="988")).to_be_visible()
    await expect(phone.get_by_text("I need help (private)")).to_be_visible()
    # One screen, a thumb's width: nothing scrolls sideways on a 375 px phone.
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 375

    await (
        phone.get_by_role("group", name="How is your mood today?")
        .get_by_text("2", exact=True)
        .click()
    )
    await (
        phone.get_by_role("group", name="How anxious do you feel?")
        .get_by_text("7", exact=True)
        .click()
    )
    await phone.get_by_label("Hours of sleep last night").fill("5.5")
    await phone.get_by_label("Anything you want your care team to know").fill("rough night")
    await phone.get_by_role("button", name="Save today's check-in").click()
    await expect(
        phone.get_by_role("heading", name="Thank you for checking in today")
    ).to_be_visible()
    await expect(phone.get_by_text("Your care team will look at today's check-in")).to_be_visible()
    await expect(phone.get_by_text("I need help (private)")).to_be_visible()

    # A second check the same day asks first, then replaces the first.
    await phone.goto(server.base_url + "/mood")
    await expect(phone.get_by_text("You already checked in today")).to_be_visible()
    assert await phone.get_by_label("Hours of sleep last night").input_value() == "5.5"
    await phone.get_by_label("Hours of sleep last night").fill("6")
    await phone.get_by_role("button", name="Update today's check-in").click()
    await expect(phone.get_by_role("heading", name="Today's check-in is updated")).to_be_visible()
    await phone.get_by_role("link", name="Done").click()
    await phone.get_by_role("link", name="Go to the waiting room").click()
    await expect(phone.get_by_role("heading", name="You are in the waiting room")).to_be_visible()
    assert "daily check-in" not in (await phone.locator("main").inner_text()).lower()

    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{patient['join_session_id']}")
    waiting = clinician.get_by_role("region", name="Waiting")
    await expect(waiting.get_by_text("Blake")).to_be_visible()
    since = waiting.locator(".mood-since")
    await expect(since).to_contain_text("(no earlier session)")
    await expect(since).to_contain_text("lowest mood 2")
    await expect(since).to_contain_text("1 review flag")
    await expect(waiting.get_by_text("review before the end")).to_be_visible()

    await clinician.goto(server.base_url + f"/patients/{patient['id']}/measures")
    trends = clinician.get_by_role("region", name="Daily check-ins")
    await expect(trends.get_by_role("img", name="Daily mood, anxiety over time")).to_be_visible()
    await expect(trends.get_by_role("img", name="Hours of sleep over time")).to_be_visible()
    await trends.get_by_text("Show each day").click()
    await expect(trends.get_by_text("rough night")).to_be_visible()
    assert errors == []
