"""The patient's private "I need help" in real Chromium windows."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from server.appkeys import ENGINE
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import crisis_events, crisis_steps
from tests.conftest import (
    RunningServer,
    admit_waiting,
    browser_sign_in,
    browser_window,
    consent_group,
)

pytestmark = pytest.mark.e2e


async def test_help_reaches_the_clinician_and_no_other_patient(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    group = demo["groups"][0]
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{group['patients'][0]['join_session_id']}")
    patients = []
    for patient in group["patients"][:2]:
        page = await browser_window(browser, errors, phone=True)
        await page.goto(patient["join_url"])
        await page.goto(server.base_url + "/room")
        patients.append(page)
    await admit_waiting(clinician, 2)
    asking, other = patients
    await expect(asking.get_by_role("heading", name="Evening IOP Group A")).to_be_visible()
    await asking.get_by_text("I need help (private)").click()
    await asking.get_by_label("Anything you want them to know (optional)").fill("Please call me")
    await asking.get_by_role("button", name="Tell my clinician now").click()
    await expect(asking.get_by_text("Your clinician has been told")).to_be_visible()
    alert = clinician.locator("#help-alerts").get_by_role("alert")
    await expect(alert).to_contain_text("Avery pressed “I need help”: Please call me")
    await other.wait_for_timeout(500)
    assert "Please call me" not in await other.content()
    assert "I need help”" not in await other.content()
    assert errors == []


async def test_a_press_lost_with_its_connection_is_sent_again_after_reconnecting(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    """The press leaves the page but the connection drops before the server has it (as
    when the room's node stops first): the page keeps the press, sends it again on the
    new connection, and shows the confirmation only when one arrives."""
    await consent_group(server, demo)
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    page = await browser_window(browser, errors, phone=True)
    lost: list[str | bytes] = []

    async def route(ws: Any) -> None:
        upstream = ws.connect_to_server()

        async def from_page(message: str | bytes) -> None:
            if not lost and '"help"' in str(message):
                lost.append(message)  # never reaches the server...
                await ws.close(code=1012, reason="network change")  # ...and the page is cut off
                await upstream.close()
                return
            upstream.send(message)

        ws.on_message(from_page)

    await page.route_web_socket(re.compile(r"/ws/rooms/"), route)
    await page.goto(patient["join_url"])
    await page.goto(server.base_url + "/room")
    await expect(page.locator("#status")).to_contain_text("Connected")
    await page.get_by_text("I need help (private)").click()
    await page.get_by_role("button", name="Tell my clinician now").click()
    await expect(page.get_by_text("Your clinician has been told")).to_be_visible(timeout=20000)
    assert len(lost) == 1
    await server.app[ROOM_JOURNAL].flush()
    async with server.app[ENGINE].connect() as conn:
        events = (
            await conn.execute(
                sa.select(crisis_events.c.id).where(crisis_events.c.patient_id == patient["id"])
            )
        ).all()
        assert len(events) == 1
        kinds = (
            await conn.execute(
                sa.select(crisis_steps.c.kind).where(crisis_steps.c.event_id == events[0].id)
            )
        ).scalars()
        assert list(kinds)[0] == "raised"
    assert errors == []
