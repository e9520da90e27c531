"""Video through the SFU in real Chromium windows with fake cameras and microphones."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from server.appkeys import CLOCK, ROOMS
from server.roomsocket.media import MEDIA
from tests.conftest import (
    RunningServer,
    admit_waiting,
    browser_sign_in,
    browser_window,
    consent_group,
    free_port,
    give_checkin,
    give_consents,
    signed_in,
    staff_login,
    start_server,
)

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


async def refused_connections(page: Any, origin: str) -> list[str]:
    """Try a fetch and a socket to another origin; the policy violations they raise."""
    await page.evaluate(
        """(origin) => {
            window.refused = [];
            document.addEventListener("securitypolicyviolation", (event) => {
                window.refused.push(event.effectiveDirective + " " + event.blockedURI);
            });
            fetch(origin.replace("wss:", "https:") + "/collect").catch(() => {});
            new WebSocket(origin + "/collect");
        }""",
        origin,
    )
    await page.wait_for_function("() => window.refused.length >= 2", timeout=10000)
    return sorted(await page.evaluate("window.refused"))


async def test_the_camera_test_works_when_tapped_before_the_page_script_has_loaded(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    # On a slow phone the button is on screen before the room's script runs: a tap then
    # must not be lost (the button waits, disabled, until the script can act on it).
    await consent_group(server, demo)
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    page = await browser_window(browser, errors, phone=True)

    async def slow_script(route: Any) -> None:
        await asyncio.sleep(1.5)
        await route.continue_()

    await page.route("**/static/media.js*", slow_script)
    await page.goto(patient["join_url"])
    await page.get_by_role("link", name="Go to the waiting room").click()
    await page.get_by_role("button", name="Test camera and microphone").click()
    await expect(page.get_by_text("Your camera and microphone work.")).to_be_visible()
    assert errors == []


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
    await admit_waiting(clinician, 2)

    for page in (clinician, *patients):
        stats = await decoding(page, 2)
        assert sum(1 for s in stats if s["kind"] == "audio" and s["packetsReceived"] > 0) >= 2
        await expect(page.locator("#tiles figure")).to_have_count(3)  # self and two others
    # Names on the tiles come from the room's member list.
    await expect(clinician.locator("#tiles figcaption", has_text="Avery")).to_be_visible()
    # The room ran under the policy with no violation (Chromium reports each as an error).
    assert errors == []
    # A script slipped into the page could not send what it reads anywhere else.
    elsewhere = f"wss://127.0.0.2:{free_port()}"
    assert await refused_connections(patients[0], elsewhere) == [
        f"connect-src {elsewhere.replace('wss:', 'https:')}/collect",
        f"connect-src {elsewhere}/collect",
    ]


async def test_a_one_on_one_session_carries_video_both_ways_and_the_host_shares_a_screen(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    appointment = demo["appointments"][0]
    session_id = appointment["session_id"]
    patient_id = appointment["patient_id"]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician_http:
        issued = await clinician_http.post(
            f"/api/patients/{patient_id}/join-links", json={"session_id": session_id}
        )
        assert issued.status == 201
        link = (await issued.json())["url"]
    # The appointment is tomorrow at 10:00: move the server's clock to just before it.
    starts = dt.datetime.fromisoformat(appointment["starts_at"])
    server.app[CLOCK].advance(seconds=(starts - server.app[CLOCK].now()).total_seconds() - 300)
    await give_consents(server, patient_id, session_id)
    await give_checkin(server, patient_id, session_id)
    errors: list[str] = []
    patient = await browser_window(browser, errors, phone=True)
    await patient.goto(link)
    await patient.get_by_role("link", name="Go to the waiting room").click()
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{session_id}")
    await admit_waiting(clinician, 1)
    for page in (patient, clinician):
        await decoding(page, 1)
    await expect(patient.get_by_role("button", name="Share screen")).to_be_hidden()
    await clinician.get_by_role("button", name="Share screen").click()
    await expect(clinician.get_by_role("button", name="Stop sharing")).to_be_visible()
    await decoding(patient, 2)  # the clinician's camera and screen
    await expect(patient.locator("#tiles figcaption", has_text="(screen)")).to_be_visible()
    await clinician.get_by_role("button", name="Stop sharing").click()
    await expect(patient.locator("#tiles figcaption", has_text="(screen)")).to_have_count(0)
    assert errors == []


async def test_after_a_network_drop_the_browser_reconnects_and_video_resumes(
    server: RunningServer, demo: dict[str, Any], browser: Any
) -> None:
    await consent_group(server, demo)
    errors: list[str] = []
    patient = demo["groups"][0]["patients"][0]
    page = await browser_window(browser, errors, phone=True)
    await page.goto(patient["join_url"])
    await page.get_by_role("link", name="Go to the waiting room").click()
    clinician = await browser_window(browser, errors)
    await browser_sign_in(clinician, server, demo)
    await clinician.goto(server.base_url + f"/rooms/{patient['join_session_id']}")
    await admit_waiting(clinician, 1)
    await decoding(page, 1)
    await decoding(clinician, 1)
    # The patient's connection drops (as a network change does): the server loses her socket.
    hub = server.app[ROOMS].get(patient["join_session_id"])
    assert hub is not None
    member_id = f"patient:{patient['id']}"
    first_connection = server.app[MEDIA][patient["join_session_id"]].peers[member_id].pc
    socket = hub._connections[member_id]
    await socket._ws.close(code=1012, message=b"network change")
    await expect(page.get_by_text("Connected").first).to_be_visible(timeout=30000)
    # The patient's connection was replaced: fresh streams decode on both sides.
    before = await clinician.evaluate("window.IOPMedia.stats()")
    decoded = sum(s.get("framesDecoded", 0) for s in before if s["kind"] == "video")

    async def more_frames() -> bool:
        stats = await clinician.evaluate("window.IOPMedia.stats()")
        return sum(s.get("framesDecoded", 0) for s in stats if s["kind"] == "video") > decoded + 30

    for _ in range(60):
        if await more_frames():
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("the clinician did not see the patient's video again")
    await decoding(page, 1)
    assert server.app[MEDIA][patient["join_session_id"]].peers[member_id].pc is not first_connection
    assert errors == []


async def test_h264_is_forwarded_still_encoded_when_the_program_prefers_it(
    tmp_path: Path, sqlite_url: str, browser: Any
) -> None:
    running = await start_server(tmp_path / "data", sqlite_url, {"IOP_VIDEO_CODECS": "h264,vp8"})
    try:
        demo = await running.seed_demo()
        await consent_group(running, demo)
        errors: list[str] = []
        patient = demo["groups"][0]["patients"][0]
        page = await browser_window(browser, errors, phone=True)
        await page.goto(patient["join_url"])
        await page.get_by_role("link", name="Go to the waiting room").click()
        clinician = await browser_window(browser, errors)
        await browser_sign_in(clinician, running, demo)
        await clinician.goto(running.base_url + f"/rooms/{patient['join_session_id']}")
        await admit_waiting(clinician, 1)
        for window in (page, clinician):
            stats = await decoding(window, 1)
            codecs = {s["codec"] for s in stats if s["kind"] == "video" and s["framesDecoded"]}
            assert codecs == {"video/H264"}, stats
        assert errors == []
    finally:
        await running.runner.cleanup()
