"""The supervisor dashboard in real Chromium: a help press takes the screen until acknowledged,
the takeover names the patient and opens the event page, and newer alerts stack on top."""

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
    flag_first_patient,
    give_checkin,
    give_consents,
    signed_in,
    staff_login,
)
from tests.e2e.test_media import decoding

pytestmark = pytest.mark.e2e
OPEN_EVENT = "Open event: location and local emergency numbers"


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
    await expect(alert.locator(".takeover-card .timer")).to_contain_text("acknowledge within")
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


async def test_the_takeover_and_each_event_row_open_the_event_page_with_the_safety_panel(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    await give_checkin(server, patient["id"], patient["join_session_id"])
    supervisor = await _dashboard(browser, server, demo, errors)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)

    alert = supervisor.get_by_role("alertdialog")
    # The event page opens beside the dashboard, which keeps watching and sounding.
    async with supervisor.context.expect_page() as opening:
        await alert.get_by_role("link", name=OPEN_EVENT).click()
    event_page = await opening.value
    await event_page.wait_for_url(f"**/crisis/events/{event_id}")
    panel = event_page.get_by_role("region", name="Safety panel")
    await expect(panel).to_contain_text("1 Example Street, Fresno, CA 93701")
    await expect(panel).to_contain_text("Local emergency numbers for the confirmed location")
    await expect(alert).to_be_visible()

    await alert.get_by_role("button", name="Acknowledge").click()
    await expect(alert).to_be_hidden()
    row = supervisor.locator("#events .event")
    await expect(row).to_contain_text("acknowledged by Sam Supervisor (demo)")
    async with supervisor.context.expect_page() as opening:
        await row.get_by_role("link", name=OPEN_EVENT).click()
    from_row = await opening.value
    await from_row.wait_for_url(f"**/crisis/events/{event_id}")
    await expect(from_row.get_by_role("region", name="Safety panel")).to_contain_text(
        "1 Example Street, Fresno, CA 93701"
    )
    assert errors == []


async def test_a_help_press_stacks_above_an_older_unacknowledged_takeover(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    errors: list[str] = []
    avery, blake = demo["groups"][0]["patients"][:2]
    for patient in (avery, blake):
        await give_consents(server, patient["id"], patient["join_session_id"])
    await give_checkin(server, blake["id"], blake["join_session_id"])
    supervisor = await _dashboard(browser, server, demo, errors)
    await give_checkin(server, avery["id"], avery["join_session_id"], high_risk=True)
    alert = supervisor.get_by_role("alertdialog")
    await expect(alert).to_contain_text("Avery in Evening IOP Group A: check-in screen")

    # Blake, in the room, presses "I need help" while Avery's alert is still unacknowledged.
    patient = await browser_window(browser, errors, phone=True)
    await patient.goto(blake["join_url"])
    await patient.goto(server.base_url + "/room")
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{blake['join_session_id']}")
    await admit_waiting(clinician, 1)
    await expect(patient.get_by_role("heading", name="Evening IOP Group A")).to_be_visible()
    await patient.get_by_text("I need help (private)").click()
    await patient.get_by_role("button", name="Tell my clinician now").click()
    await expect(patient.get_by_text("Your clinician has been told")).to_be_visible()

    # Both are on screen, the newest on top, each with its own acknowledge.
    await expect(alert).to_contain_text("Blake in Evening IOP Group A: pressed “I need help”")
    await expect(alert).to_contain_text("Avery in Evening IOP Group A: check-in screen")
    await expect(alert.get_by_role("button", name="Acknowledge")).to_have_count(2)
    cards = alert.locator(".takeover-card")
    await expect(cards.nth(0)).to_contain_text(
        "Blake in Evening IOP Group A: pressed “I need help”"
    )
    await expect(cards.nth(1)).to_contain_text("Avery in Evening IOP Group A: check-in screen")
    await expect(alert.locator("#takeover-count")).to_have_text(
        "2 high-level events are waiting for acknowledgement (newest first)."
    )
    await cards.nth(0).get_by_role("button", name="Acknowledge").click()
    await expect(cards).to_have_count(1)
    await expect(cards.first).to_contain_text("Avery in Evening IOP Group A: check-in screen")
    await expect(alert.locator("#takeover-count")).to_be_hidden()
    await expect(supervisor.locator("#events .event", has_text="Blake")).to_contain_text(
        "acknowledged by Sam Supervisor (demo)"
    )
    await cards.first.get_by_role("button", name="Acknowledge").click()
    await expect(alert).to_be_hidden()
    assert errors == []
