"""The supervisor dashboard in real Chromium: a help press takes the screen until acknowledged,
and the takeover names the patient from the event itself."""

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
    give_checkin,
)
from tests.e2e.test_media import decoding

pytestmark = pytest.mark.e2e


async def _dashboard(
    browser: Any, server: RunningServer, demo: dict[str, Any], errors: list[str]
) -> Any:
    """The demo supervisor's dashboard, signed in and live."""
    page = await browser_window(browser, errors)
    await browser_sign_in(page, server, demo, role="supervisor")
    await page.goto(server.base_url + "/supervisor")
    await expect(page.locator("#dash-status")).to_contain_text("Live")
    return page


async def test_a_help_press_takes_over_the_supervisors_screen_and_ends_in_a_private_room(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    supervisor = await browser_window(browser, errors)
    await browser_sign_in(supervisor, server, demo, role="supervisor")
    await supervisor.goto(server.base_url + "/supervisor")
    await expect(supervisor.get_by_role("heading", name="Supervision")).to_be_visible()
    await expect(
        supervisor.get_by_text("Do not wait for an acknowledgement to call 911").first
    ).to_be_visible()
    await expect(supervisor.locator("#dash-status")).to_contain_text("Live")
    await supervisor.get_by_role("button", name="Enable sound").click()
    await expect(supervisor.locator("#sound-toggle")).to_have_attribute("aria-pressed", "true")

    patient = await browser_window(browser, errors, phone=True)
    await patient.goto(group["patients"][0]["join_url"])
    await patient.goto(server.base_url + "/room")
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{group['patients'][0]['join_session_id']}")
    await admit_waiting(clinician, 1)
    await expect(patient.get_by_role("heading", name="Evening IOP Group A")).to_be_visible()
    await patient.get_by_text("I need help (private)").click()
    await patient.get_by_role("button", name="Tell my clinician now").click()
    await expect(patient.get_by_text("Your clinician has been told")).to_be_visible()

    alert = supervisor.get_by_role("alertdialog")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("Avery in Evening IOP Group A")
    await expect(alert.locator("#takeover-timer")).to_contain_text("acknowledge within")
    await expect(supervisor.locator("#events .event")).to_have_count(1)
    # The session's row counts the patient in the room.
    await expect(supervisor.locator("#sessions tr .in-room")).to_have_text("1")
    await alert.get_by_role("button", name="Acknowledge").click()
    await expect(alert).to_be_hidden()
    event = supervisor.locator("#events .event")
    await expect(event).to_contain_text("acknowledged by Sam Supervisor (demo)")

    # The supervisor joins the session and takes Avery to a private room: the group does
    # not see or hear them, Avery sees and hears the supervisor, media never stops.
    await event.get_by_role("link", name="Join the session").click()
    await supervisor.get_by_role("button", name="Private room with Avery").click()
    await expect(patient.get_by_role("alert")).to_contain_text(
        "You are now talking privately with Sam Supervisor (demo)"
    )
    await expect(
        patient.locator("#tiles figcaption", has_text="Sam Supervisor (demo)")
    ).to_be_visible()
    await decoding(patient, 1)
    await expect(clinician.get_by_text("Avery is in a private room")).to_be_visible()
    assert errors == []


async def test_a_high_risk_check_in_before_the_room_names_the_patient_on_the_takeover(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    """The screen is raised before the patient opens the room: nobody is in the live room
    to take a name from, and nobody has acknowledged yet."""
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    supervisor = await _dashboard(browser, server, demo, errors)
    await give_checkin(server, patient["id"], patient["join_session_id"], high_risk=True)

    alert = supervisor.get_by_role("alertdialog")
    await expect(alert).to_contain_text("Avery in Evening IOP Group A: check-in screen")
    row = supervisor.locator("#events .event")
    await expect(row).to_contain_text("Avery · Evening IOP Group A · check-in screen")
    await expect(row).to_contain_text("waiting for acknowledgement")
    # A fresh snapshot (a reload, a reconnect) names her too.
    await supervisor.reload()
    await expect(supervisor.get_by_role("alertdialog")).to_contain_text(
        "Avery in Evening IOP Group A: check-in screen"
    )
    await expect(supervisor.locator("#events .event")).to_contain_text("Avery ·")
    assert errors == []
