"""Video through the SFU in real Chromium windows with fake cameras and microphones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import RunningServer, browser_sign_in, browser_window, consent_group

pytestmark = pytest.mark.e2e


async def decoding(page: Any, streams: int, within: float = 40.0) -> list[dict[str, Any]]:
    """Wait until `streams` inbound video streams have decoded frames; return the stats."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        stats = await page.evaluate("window.IOPMedia.stats()")
        video = [s for s in stats if s["kind"] == "video" and s["framesDecoded"] > 0]
        if len(video) >= streams:
            return stats
        if loop.time() > deadline:
            raise AssertionError(f"only {len(video)} decoding video streams: {stats}")
        await asyncio.sleep(0.5)


async def test_three_browsers_in_a_group_each_decode_the_other_two(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    room_id = group["patients"][0]["join_session_id"]
    patients = []
    for patient in group["patients"][:2]:
        page = await browser_window(browser, errors, phone=True)
        await page.goto(patient["join_url"])
        await page.get_by_role("link", name="Go to the waiting room").click()
        await page.get_by_role("button", name="Test camera and microphone").click()
        await expect(page.get_by_text("Your camera and microphone work.")).to_be_visible()
        patients.append(page)
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{room_id}")
    await clinician.get_by_role("button", name="Admit everyone waiting").click()

    for page in (clinician, *patients):
        stats = await decoding(page, 2)
        assert sum(1 for s in stats if s["kind"] == "audio" and s["packetsReceived"] > 0) >= 2
        await expect(page.locator("#tiles figure")).to_have_count(3)  # self and two others
    # Names on the tiles come from the room's member list.
    await expect(clinician.locator("#tiles figcaption", has_text="Avery")).to_be_visible()
    assert errors == []
