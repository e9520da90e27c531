"""A family session in three Chromium windows: clinician, patient and support person."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from playwright.async_api import expect

from server.appkeys import CLOCK
from tests.conftest import (
    RunningServer,
    admit_waiting,
    browser_sign_in,
    browser_window,
    give_checkin,
    give_consents,
    signed_in,
    staff_login,
)

pytestmark = pytest.mark.e2e


async def test_clinician_issues_a_support_link_and_the_support_person_joins_the_family_session(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    family = demo["family"]
    starts = server.app[CLOCK].now() + dt.timedelta(minutes=5)
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        created = await admin.post(
            "/api/appointments",
            json={
                "program_id": demo["program"]["id"],
                "patient_id": family["patient_id"],
                "clinician_id": family["clinician_id"],
                "kind": "family",
                "starts_at": starts.isoformat(),
            },
        )
        session_id = (await created.json())["session_id"]
        patient_link = await admin.post(
            f"/api/patients/{family['patient_id']}/join-links", json={"session_id": session_id}
        )
        patient_url = (await patient_link.json())["url"]
    await give_consents(server, family["patient_id"], session_id)
    await give_checkin(server, family["patient_id"], session_id)
    errors: list[str] = []

    # The clinician issues the support person's link from the patient's page.
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/patients/{family['patient_id']}")
    panel = clinician.get_by_role("region", name="Family sessions")
    await expect(panel.get_by_text("signed", exact=False).first).to_be_visible()
    await panel.get_by_role("button", name="Issue support-person link").first.click()
    support_url = await clinician.get_by_label("Support-person link").input_value()
    assert "/s/" in support_url

    # The support person, on a phone: who they are, their own consent, the waiting room.
    support = await browser_window(browser, errors, phone=True)
    await support.goto(support_url)
    await support.get_by_label("Last 4 digits of your phone number").fill("0150")
    await support.get_by_role("button", name="Continue").click()
    await expect(support.get_by_role("heading", name="Joining a family session")).to_be_visible()
    for box in await support.get_by_role("checkbox").all():
        await box.check()
    await support.get_by_label("Type your full name to sign").fill("Jamie Example")
    await support.get_by_role("button", name="I agree").click()
    await support.get_by_role("link", name="Go to the waiting room").click()
    await expect(support.get_by_role("heading", name="You are in the waiting room")).to_be_visible()
    await expect(support.get_by_text("I need help")).to_have_count(0)

    patient = await browser_window(browser, errors, phone=True)
    await patient.goto(patient_url)
    await patient.get_by_role("link", name="Go to the waiting room").click()
    await expect(patient.get_by_role("heading", name="You are in the waiting room")).to_be_visible()

    await clinician.goto(server.base_url + f"/rooms/{session_id}")
    await admit_waiting(clinician, 2)
    in_room = support.get_by_role("region", name="In the room")
    for name in ("Casey Lead (demo)", "Riley", "Support person (sister) (you)"):
        await expect(in_room.get_by_text(name, exact=False).first).to_be_visible()
    await expect(
        clinician.get_by_role("region", name="In the room").get_by_text("Family session guest")
    ).to_be_visible()
    await support.get_by_label("Message").fill("Glad to be here")
    await support.get_by_role("button", name="Send").click()
    await expect(patient.get_by_text("Glad to be here")).to_be_visible()
    await expect(support.get_by_role("button", name="Raise hand")).to_have_count(0)
    assert errors == []
