"""Handouts in real Chromium: the clinician's library, the phone reader, show to all."""

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

pytestmark = pytest.mark.e2e

STOP = """# DBT STOP skill

When an urge or a strong feeling hits, STOP before you act.

## Stop and take a step back

Freeze for a moment. Take one breath. <b>Not bold</b>

## Observe and proceed mindfully

Notice what is happening inside and around you, then choose what helps.
"""


async def test_a_clinician_writes_a_handout_and_shows_it_to_a_patient_on_a_phone(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    room_id = group["patients"][0]["join_session_id"]

    # The library: write a Markdown handout, then a new version of it; both are listed.
    host = await browser_window(browser, errors)
    await browser_sign_in(host, server, demo)
    await host.get_by_role("link", name="Handouts").click()
    await expect(host.locator("#handout-library")).to_contain_text("Box breathing")
    await host.get_by_label("Title").fill("DBT STOP skill")
    await host.get_by_label("Or write it in Markdown").fill(STOP.replace("one breath", "a breath"))
    await host.get_by_role("button", name="Add handout").click()
    await expect(host.get_by_role("heading", name="DBT STOP skill")).to_be_visible()
    await host.get_by_label("Or write the new version in Markdown").fill(STOP)
    await host.get_by_role("button", name="Add version").click()
    await expect(host.locator("#handout-versions tbody tr")).to_have_count(2)
    await expect(host.locator("#handout-versions")).to_contain_text("2 (latest)")
    # Attach the latest version to this evening's session as a whole.
    await host.locator("#s-session").select_option(room_id)
    await host.locator("#attach-session").get_by_role("button", name="Attach").click()
    await expect(host.locator("#handout-attachments")).to_contain_text("the whole session")

    await host.goto(server.base_url + f"/rooms/{room_id}")
    patient = await browser_window(browser, errors, phone=True)
    await patient.goto(group["patients"][0]["join_url"])
    await patient.get_by_role("link", name="Handouts for your session").click()
    await expect(patient.locator("#my-handouts")).to_contain_text("DBT STOP skill")
    await patient.goto(server.base_url + "/room")
    await admit_waiting(host, 1)

    # Everyone has the handout button; the patient reads at their own pace.
    await patient.get_by_role("button", name="Handout: DBT STOP skill").click()
    reader = patient.locator("#handout-reader")
    await expect(reader).to_contain_text("Page 1 of 3")
    await patient.get_by_role("button", name="Next page").click()
    await expect(reader).to_contain_text("Freeze for a moment. Take one breath.")
    # Raw HTML in the Markdown is shown as text, never as markup.
    await expect(reader).to_contain_text("<b>Not bold</b>")
    await patient.get_by_role("button", name="Close handout").click()
    await expect(reader).to_be_hidden()

    # The host shows it to all: the patient's reader opens and follows the host's pages.
    await host.get_by_role("button", name="Show DBT STOP skill to all").click()
    await expect(reader).to_contain_text("Page 1 of 3 · following your clinician")
    await expect(host.locator("#handout-reader")).to_contain_text("everyone sees this page")
    await host.locator("#handout-reader").get_by_role("button", name="Next page").click()
    await expect(reader).to_contain_text("Page 2 of 3")
    await host.locator("#handout-reader").get_by_role("button", name="Next page").click()
    await expect(reader).to_contain_text("Observe and proceed mindfully")
    # A patient whose phone reconnects lands on the page being shown.
    await patient.reload()
    await expect(patient.locator("#handout-reader")).to_contain_text("Page 3 of 3")
    await host.get_by_role("button", name="Stop showing").click()
    await expect(patient.locator("#handout-reader")).to_be_hidden()

    # The demo handout belongs to the skills phase: it is offered once the group is there.
    box = patient.get_by_role("button", name="Handout: Box breathing and the 5-4-3-2-1")
    await expect(box).to_have_count(0)
    await host.get_by_role("button", name="Start the session clock").click()
    for _ in range(3):
        await host.get_by_role("button", name="Next phase").click()
    await expect(patient.locator("#phase-title")).to_have_text("Skills (CBT/DBT)")
    await expect(box).to_be_visible()
    assert not errors, errors
