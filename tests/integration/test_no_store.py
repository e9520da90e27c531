"""Pages and downloads that show patient data are never kept in a browser or proxy cache."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import (
    RunningServer,
    consent_group,
    flag_first_patient,
    signed_in,
    staff_login,
)


async def test_every_page_and_download_with_patient_data_says_no_store(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await consent_group(server, demo)
    patient = demo["groups"][0]["patients"][0]
    session_id = patient["join_session_id"]
    seen: dict[str, str | None] = {}
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
        for path in (
            f"/patients/{patient['id']}",  # intake record
            f"/patients/{patient['id']}/measures",  # check-in history
            f"/patients/{patient['id']}/safety-plan",
            f"/api/patients/{patient['id']}",
            f"/crisis/events/{event_id}",  # with the safety panel
            f"/api/crisis/events/{event_id}",
            f"/rooms/{session_id}",
            f"/sessions/{session_id}/attendance",
            f"/sessions/{session_id}/attendance.csv",
            "/attendance/weekly",
        ):
            async with clinician.get(path, allow_redirects=False) as response:
                assert response.status == 200, path
                seen[path] = response.headers.get("Cache-Control")
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        for path in ("/supervisor", "/crisis/break-glass"):
            async with supervisor.get(path, allow_redirects=False) as response:
                assert response.status == 200, path
                seen[path] = response.headers.get("Cache-Control")
    async with server.client() as phone:
        async with phone.get(patient["join_url"]) as landed:
            assert landed.status == 200
            seen["/join"] = landed.headers.get("Cache-Control")
        async with phone.get("/consent/receipts") as listing:
            seq = re.search(r'href="/consent/receipt/(\d+)"', await listing.text())
            assert listing.status == 200 and seq is not None
            seen["/consent/receipts"] = listing.headers.get("Cache-Control")
        for path in (
            f"/consent/receipt/{seq.group(1)}",
            f"/consent/receipt/{seq.group(1)}/download",
        ):
            async with phone.get(path, allow_redirects=False) as response:
                assert response.status == 200, path
                seen[path] = response.headers.get("Cache-Control")
        # A redirect away from a finished step is as private as the page it replaces.
        async with phone.get("/consent", allow_redirects=False) as done:
            assert done.status == 303
            seen["/consent (303)"] = done.headers.get("Cache-Control")
    assert {path: value for path, value in seen.items() if value != "no-store"} == {}


async def test_static_assets_stay_cacheable(server: RunningServer) -> None:
    async with server.client() as client:
        async with client.get("/static/app.css") as response:
            assert response.status == 200
            assert "no-store" not in response.headers.get("Cache-Control", "")


async def test_modules_imported_by_plain_url_are_revalidated_and_versioned_ones_are_not(
    server: RunningServer,
) -> None:
    """ES modules import each other without the ?v= version the pages put on their entry
    scripts: such a request must be revalidated, or a new page could run an old module."""
    async with server.client() as client:
        async with client.get("/static/lib/socket.js") as plain:
            assert plain.status == 200
            assert plain.headers.get("Cache-Control") == "no-cache"
        async with client.get("/static/lib/socket.js?v=anything") as versioned:
            assert versioned.status == 200
            assert versioned.headers.get("Cache-Control") is None
