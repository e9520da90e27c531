"""The shared session clock in three real Chromium windows."""

from __future__ import annotations

import asyncio
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


async def test_three_screens_agree_on_the_time_and_the_host_runs_the_session(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    room_id = group["patients"][0]["join_session_id"]
    host = await browser_window(browser, errors, phone=True)
    await browser_sign_in(host, server, demo)
    await host.goto(server.base_url + f"/rooms/{room_id}")
    patients = []
    for patient in group["patients"][:2]:
        page = await browser_window(browser, errors, phone=True)
        await page.goto(patient["join_url"])
        await page.goto(server.base_url + "/room")
        patients.append(page)
    await admit_waiting(host, 2)
    for page in patients:
        await expect(page.get_by_role("heading", name="Evening IOP Group A")).to_be_visible()

    await host.get_by_role("button", name="Start the session clock").click()
    for page in (host, *patients):
        await expect(page.locator("#phase-title")).to_have_text(
            "Arrival, tech and privacy check, location, screeners"
        )
    await asyncio.sleep(1.5)  # a few clock-sync round trips

    # Read each screen's remaining time and its own clock; project to one instant.
    read = "() => [Date.now(), Number(document.getElementById('remaining').dataset.remainingMs)]"
    readings = [await page.evaluate(read) for page in (host, *patients)]
    reference = readings[0][0]
    projected = [remaining - (reference - taken) for taken, remaining in readings]
    assert max(projected) - min(projected) < 250, projected
    assert 590_000 < projected[0] <= 600_000

    # Grounding: everyone sees the pacer in the same breath.
    await host.get_by_role("button", name="Next phase").click()
    for page in patients:
        await expect(page.locator("#breath-cue")).to_contain_text("Breathe in")
        await expect(
            page.get_by_text("Stop and breathe normally if you feel dizzy")
        ).to_be_visible()

    # The check-in round: an ordered queue, a turn timer, the speaker can finish.
    await host.get_by_role("button", name="Next phase").click()
    await expect(host.locator("#speaker")).to_contain_text("is sharing")
    speaker = await host.locator("#speaker").inner_text()
    first = patients[0] if speaker.startswith("Avery") else patients[1]
    await expect(first.locator("#turn")).to_contain_text("left in this turn")
    await first.get_by_role("button", name="I'm done").click()
    await expect(host.locator("#speaker")).not_to_have_text(speaker)

    # Pause holds everyone's time; extend adds to it.
    await host.get_by_role("button", name="Pause").click()
    await expect(patients[1].locator("#clock-status")).to_have_text("Paused")
    frozen = await patients[1].locator("#remaining").inner_text()
    await asyncio.sleep(1.2)
    assert await patients[1].locator("#remaining").inner_text() == frozen
    await host.get_by_role("button", name="Resume").click()
    await host.get_by_role("button", name="Extend 5 minutes").click()
    await expect(patients[0].locator("#remaining")).to_contain_text("29:")
    assert errors == []
