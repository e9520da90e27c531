"""A group room in three real Chromium windows: two patients and their clinician."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import RunningServer, browser_sign_in, browser_window, consent_group

pytestmark = pytest.mark.e2e


async def test_two_patients_wait_the_clinician_admits_them_and_all_see_each_other(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    avery, blake = group["patients"][0], group["patients"][1]
    room_id = avery["join_session_id"]

    patients = []
    for patient in (avery, blake):
        page = await browser_window(browser, errors, phone=True)
        await page.goto(patient["join_url"])
        await page.get_by_role("link", name="Go to the waiting room").click()
        await expect(
            page.get_by_role("heading", name="You are in the waiting room")
        ).to_be_visible()
        patients.append(page)

    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{room_id}")

    waiting = clinician.get_by_role("region", name="Waiting")
    await expect(waiting.get_by_text("Avery")).to_be_visible()
    await expect(waiting.get_by_text("Blake")).to_be_visible()
    await clinician.get_by_role("button", name="Admit Avery").click()
    await clinician.get_by_role("button", name="Admit everyone waiting").click()

    people = clinician.get_by_role("region", name="In the room")
    for page in (clinician, *patients):
        in_room = page.get_by_role("region", name="In the room")
        for name in ("Casey Lead (demo)", "Avery", "Blake"):
            await expect(in_room.get_by_text(name, exact=False).first).to_be_visible()

    avery_page, blake_page = patients
    # Nobody has been muted: no patient is offered "Ask to be unmuted".
    for page in patients:
        await expect(page.get_by_role("region", name="In the room")).to_be_visible()
        await expect(page.locator("#ask-unmute")).to_be_hidden()
    # Chat, a raised hand, a mute and a removal, as a clinician runs them.
    await avery_page.get_by_label("Message").fill("Hi <b>everyone</b>")
    await avery_page.get_by_role("button", name="Send").click()
    await expect(blake_page.get_by_text("Hi <b>everyone</b>")).to_be_visible()
    await blake_page.get_by_role("button", name="Raise hand").click()
    await expect(people.get_by_text("✋ hand raised")).to_be_visible()
    await clinician.get_by_role("button", name="Mute Blake").click()
    await expect(blake_page.get_by_role("alert")).to_contain_text("muted your microphone")
    await expect(blake_page.get_by_role("button", name="Ask to be unmuted")).to_be_visible()
    await expect(avery_page.locator("#ask-unmute")).to_be_hidden()
    await clinician.get_by_role("button", name="Remove Avery").click()
    await expect(avery_page.get_by_text("You have been removed from this session")).to_be_visible()
    await expect(people.get_by_text("Avery")).to_have_count(0)
    await expect(
        blake_page.get_by_role("region", name="In the room").get_by_text("Avery")
    ).to_have_count(0)
    assert errors == []
