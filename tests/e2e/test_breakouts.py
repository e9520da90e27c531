"""Breakout practice rooms in real Chromium windows: three patients, a host, a supervisor."""

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
from tests.e2e.test_media import decoding

pytestmark = pytest.mark.e2e


async def test_three_patients_in_two_breakouts_see_only_their_room_until_recalled(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    supervisor = await browser_window(browser, errors)
    await browser_sign_in(supervisor, server, demo, role="supervisor")
    await supervisor.goto(server.base_url + "/supervisor")
    await expect(supervisor.locator("#dash-status")).to_contain_text("Live")
    patients: list[Any] = []
    for patient in group["patients"][:3]:
        page = await browser_window(browser, errors, phone=True)
        await page.goto(patient["join_url"])
        await page.goto(server.base_url + "/room")
        patients.append(page)
    avery, blake, cameron = patients
    host = await browser_window(browser, errors)
    await browser_sign_in(host, server, demo)
    await host.goto(server.base_url + f"/rooms/{group['patients'][0]['join_session_id']}")
    await admit_waiting(host, 3)
    for page in patients:
        await expect(page.locator("#tiles figure")).to_have_count(4)  # self and three others

    # By hand: Avery and Blake in Room 1, Cameron in Room 2.
    panel = host.locator("#breakouts-panel")
    await panel.get_by_label("Split").select_option("hand")
    await panel.get_by_label("Rooms", exact=True).fill("2")
    await panel.get_by_label("Room for Cameron").select_option("2")
    await panel.get_by_label("Room for Avery").select_option("1")
    await panel.get_by_label("Room for Blake").select_option("1")
    await panel.get_by_label("Prompt (the skill to practise)").fill("DEAR MAN: ask for one thing")
    await panel.get_by_label("Minutes").fill("10")
    await panel.get_by_role("button", name="Start breakouts").click()

    for page, name in ((avery, "Room 1"), (blake, "Room 1"), (cameron, "Room 2")):
        banner = page.locator("#breakout-banner")
        await expect(banner.get_by_role("heading")).to_have_text("You are in " + name)
        await expect(banner).to_contain_text("Practise: DEAR MAN: ask for one thing")
        await expect(banner.get_by_role("timer")).to_contain_text(" left")
    # Each sees only their breakout: Avery and Blake each other, Cameron nobody yet.
    await expect(avery.locator("#tiles figure")).to_have_count(2)
    await expect(avery.locator("#tiles figcaption", has_text="Blake")).to_be_visible()
    await expect(cameron.locator("#tiles figure")).to_have_count(1)
    await expect(host.locator("#tiles figure")).to_have_count(1)  # the main room is empty

    # "Facilitator please" from Room 2; the host visits and is seen and heard there.
    await cameron.get_by_role("button", name="Facilitator please").click()
    await expect(cameron.get_by_text("A facilitator has been asked to join you.")).to_be_visible()
    await expect(panel.locator("#breakout-calls")).to_contain_text(
        "Facilitator please: Cameron in Room 2"
    )
    await panel.get_by_role("button", name="Visit Room 2").click()
    await expect(cameron.locator("#tiles figcaption", has_text="Casey Lead (demo)")).to_be_visible()
    await expect(cameron.get_by_role("button", name="Facilitator please")).to_be_enabled()
    await expect(host.locator("#tiles figcaption", has_text="Cameron")).to_be_visible()
    await expect(host.locator("#tiles figure")).to_have_count(2)
    await decoding(cameron, 1)

    # The private "I need help" inside a breakout reaches the on-call supervisor.
    await avery.get_by_text("I need help (private)").click()
    await avery.get_by_role("button", name="Tell my clinician now").click()
    await expect(avery.get_by_text("Your clinician has been told")).to_be_visible()
    await expect(supervisor.get_by_role("alertdialog")).to_contain_text(
        "Avery in Evening IOP Group A"
    )
    await expect(host.locator("#help-alerts")).to_contain_text("Avery pressed “I need help”")

    await panel.get_by_label("Broadcast to every room").fill("Two minutes to wrap up")
    await panel.get_by_role("button", name="Broadcast").click()
    for page in patients:
        await expect(page.locator("#breakout-news")).to_contain_text("Two minutes to wrap up")

    # Recall all: everyone is back together.
    await panel.get_by_role("button", name="Recall all").click()
    for page in patients:
        await expect(page.locator("#breakout-banner")).to_be_hidden()
        await expect(page.locator("#breakout-news")).to_contain_text("back in the main room")
        await expect(page.locator("#tiles figure")).to_have_count(4)
    await expect(host.locator("#tiles figure")).to_have_count(4)
    assert errors == []
