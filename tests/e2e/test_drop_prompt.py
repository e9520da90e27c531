"""The dropped-connection prompt on the facilitator's room page, in real Chromium windows."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from server.appkeys import ENGINE
from server.catalog import patients as catalog_patients
from server.catalog.schemas import PatientIn
from tests.conftest import (
    RunningServer,
    admit_waiting,
    browser_sign_in,
    browser_window,
    consent_group,
    flag_first_patient,
    signed_in,
    staff_login,
)

pytestmark = pytest.mark.e2e


async def test_the_prompt_shows_the_backup_phone_step_after_the_session_phone(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    patient = demo["groups"][0]["patients"][0]
    async with server.app[ENGINE].begin() as conn:
        record = await catalog_patients.get_patient(conn, server.keyring, patient["id"])
        assert record is not None
        fields = {k: record[k] for k in PatientIn.model_fields if k in record}
        fields["alternate_phone"] = "(555) 010-0188"
        await catalog_patients.update_patient(
            conn, server.keyring, patient["id"], PatientIn(**fields)
        )
    errors: list[str] = []
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{patient['join_session_id']}")
    phone = await browser_window(browser, errors, phone=True)
    await phone.goto(patient["join_url"])
    await phone.goto(server.base_url + "/room")
    await admit_waiting(clinician, 1)
    await expect(phone.get_by_role("heading", name="Evening IOP Group A")).to_be_visible()
    async with await signed_in(server, *staff_login(demo, "clinician")) as api:
        await flag_first_patient(api, demo)

    await phone.close()  # the patient's connection drops
    prompt = clinician.locator("#drop-prompts .drop-prompt")
    await expect(prompt).to_contain_text("Avery's connection dropped")
    steps = prompt.locator("li.drop-step")
    await expect(steps).to_have_count(4)
    await expect(steps.nth(0)).to_contain_text("Call back on (555) 010-0150 (the session phone)")
    backup = steps.nth(1)
    await expect(backup).to_contain_text(
        "Call (555) 010-0101 (backup phone), then (555) 010-0188 (alternate phone)"
    )
    await expect(backup.get_by_role("link", name="Call 1")).to_have_attribute(
        "href", "tel:+15550100101"
    )
    await expect(backup.get_by_role("link", name="Call 2")).to_have_attribute(
        "href", "tel:+15550100188"
    )
    await expect(steps.nth(2)).to_contain_text("skipped: no support person on file (logged")
    await expect(steps.nth(2).get_by_role("button", name="Done")).to_have_count(0)
    await backup.get_by_role("button", name="Done").click()
    await expect(backup).to_contain_text("taken (Casey Lead (demo)")
    assert errors == []
