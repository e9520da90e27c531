"""The whole technology check on a phone with Chromium's fake camera and microphone: the
echo through the real SFU, the TURN relay (coturn on loopback), the kept result, and the
staff badge in the patient list, on the patient's page and in the waiting room."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from server.appkeys import ENGINE
from server.storage.tables import tech_checks
from tests.conftest import (
    RunningServer,
    browser_sign_in,
    browser_window,
    consent_group,
    start_server,
)
from tests.e2e.test_media_turn import SECRET, turn_port  # noqa: F401 (the coturn fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture
async def turn_server(
    tmp_path: Path,
    sqlite_url: str,
    turn_port: int,  # noqa: F811
) -> AsyncIterator[RunningServer]:
    secret = tmp_path / "turn.secret"
    secret.write_text(SECRET)
    running = await start_server(
        tmp_path / "data",
        sqlite_url,
        {
            "IOP_TURN_URLS": f"turn:127.0.0.1:{turn_port}?transport=udp",
            "IOP_TURN_SECRET_FILE": str(secret),
        },
    )
    try:
        yield running
    finally:
        await running.runner.cleanup()


async def test_patient_runs_the_whole_check_and_staff_see_it_passed(
    turn_server: RunningServer, browser: Any
) -> None:
    server = turn_server
    demo = await server.seed_demo()
    await consent_group(server, demo)
    group = demo["groups"][0]
    patient = group["patients"][0]
    errors: list[str] = []
    phone = await browser_window(browser, errors, phone=True)
    await phone.goto(patient["join_url"])
    await phone.get_by_role("link", name="Check your camera, sound and connection").click()
    await phone.wait_for_url("**/techcheck")
    await phone.get_by_role("button", name="Start the check").click()
    await expect(phone.locator("#step-browser .tc-result")).to_have_text(
        "✓ Your browser can do video calls"
    )
    await expect(phone.locator("#step-camera .tc-result")).to_contain_text("✓ We can see you")
    await expect(phone.locator("#step-microphone .tc-result")).to_have_text(
        "✓ We can hear you", timeout=15000
    )
    await phone.get_by_role("button", name="Play a sound").click()
    await phone.get_by_role("button", name="Yes, I heard it").click()
    await expect(phone.locator("#step-connection .tc-result")).to_have_text(
        "✓ Your connection is good for video", timeout=40000
    )
    await expect(phone.locator("#tc-rtt")).to_have_text(re.compile(r"^\d+ ms$"))
    await expect(phone.locator("#step-relay .tc-result")).to_have_text(
        "✓ The backup route works", timeout=20000
    )
    await expect(phone.locator("#tc-summary-heading")).to_have_text(
        "Everything works. You are ready for group."
    )
    await expect(phone.locator("#tc-saved")).to_have_text(
        "Your result is saved: your care team can see it."
    )
    async with server.app[ENGINE].connect() as conn:
        query = sa.select(tech_checks).where(tech_checks.c.patient_id == patient["id"])
        kept = (await conn.execute(query)).mappings().one()
    assert kept["patient_id"] == patient["id"] and kept["passed"] is True
    assert kept["steps"] == {
        "browser": "pass",
        "camera": "pass",
        "microphone": "pass",
        "speaker": "pass",
        "connection": "pass",
        "relay": "pass",
    }
    assert kept["browser"] == "chrome"
    assert kept["kbps"] >= 100 and kept["loss_pct"] <= 5 and kept["rtt_ms"] is not None

    # Staff: the patient list, the patient's page, and the waiting room.
    await phone.goto(server.base_url + "/join")
    await phone.get_by_role("link", name="Go to the waiting room").click()
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/groups/{group['id']}")
    member = clinician.locator(
        "li", has=clinician.get_by_role("link", name=patient["display_name"])
    )
    await expect(member.locator(".techcheck-badge")).to_contain_text("Tech check passed")
    await clinician.goto(server.base_url + f"/patients/{patient['id']}")
    await expect(clinician.locator(".techcheck-badge")).to_contain_text("Tech check passed")
    await clinician.goto(server.base_url + f"/rooms/{patient['join_session_id']}")
    waiting = clinician.locator("#waiting > li")
    await expect(waiting).to_have_count(1, timeout=20000)
    await expect(waiting.locator(".techcheck-badge")).to_contain_text("Tech check passed")
    assert errors == []
