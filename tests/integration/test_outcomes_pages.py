"""Outcome tracking and discharge over HTTP: the measurement-based-care table, the
aftercare plan staff write and the patient opens and downloads, and the patient's own view
of their safety plan."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import sqlalchemy as sa

from rooms.schedule import zone
from server.appkeys import CLOCK, ENGINE
from server.catalog.store import new_id
from server.checkin import safety_checks as checkin_safety
from server.storage.tables import (
    aftercare_plans,
    attendance_events,
    audit_log,
    screenings,
    sessions,
)
from tests.conftest import CSRF, RunningServer, enrol_totp, signed_in, staff_login


def _patients(demo: dict[str, Any]) -> list[dict[str, str]]:
    return demo["groups"][0]["patients"]


async def _screen(
    server: RunningServer, patient: dict[str, str], at: dt.datetime, phq9: int, gad7: int | None
) -> None:
    """A stored check-in screening with these totals (sealed as the check-in stores them)."""
    result: dict[str, Any] = {"phq9": {"total": phq9, "band": "x", "prefer_not": 0}}
    result["gad7"] = (
        {"total": gad7, "band": "x", "prefer_not": 0}
        if gad7 is not None
        else {"total": None, "band": "incomplete", "prefer_not": 1}
    )
    row_id = new_id()
    async with server.app[ENGINE].begin() as conn:
        await conn.execute(
            screenings.insert().values(
                id=row_id,
                session_id=patient["join_session_id"],
                patient_id=patient["id"],
                result_enc=server.keyring.seal(json.dumps(result), context=f"screenings/{row_id}"),
                instruments="phq9,gad7",
                at=at,
            )
        )


async def _audit(server: RunningServer, action: str) -> list[Any]:
    async with server.app[ENGINE].connect() as conn:
        return list(await conn.execute(sa.select(audit_log).where(audit_log.c.action == action)))


def _row(page: str, name: str) -> str:
    found = re.search(rf"<tr data-patient=[^>]*>\s*<td><a [^>]*>{name}</a>.*?</tr>", page, re.S)
    assert found is not None, f"no row for {name}"
    return found.group(0)


async def test_outcomes_show_first_and_latest_scores_reliable_change_and_last_weeks_attendance(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    avery, blake, cameron = _patients(demo)[:3]
    now = server.app[CLOCK].now()
    await _screen(server, avery, now - dt.timedelta(days=1), 18, 12)
    await _screen(server, avery, now, 4, 11)  # PHQ-9 -14: reliable; GAD-7 -1: not
    await _screen(server, blake, now - dt.timedelta(days=1), 8, 5)
    await _screen(server, blake, now, 15, 6)  # PHQ-9 +7: reliably worse
    await _screen(server, cameron, now, 10, None)  # one score, GAD-7 incomplete
    # Avery attends 90 minutes of the group's first session; a week after it, that session's
    # week is the last full week.
    session_id = avery["join_session_id"]
    async with server.app[ENGINE].begin() as conn:
        starts_at = await conn.scalar(
            sa.select(sessions.c.starts_at).where(sessions.c.id == session_id)
        )
        await conn.execute(
            attendance_events.insert(),
            [
                {
                    "session_id": session_id,
                    "person_type": "patient",
                    "person_id": avery["id"],
                    "role": "participant",
                    "event": event,
                    "at": starts_at + dt.timedelta(minutes=minute),
                }
                for event, minute in (("admitted", 0), ("left", 90))
            ],
        )
    server.app[CLOCK].advance(seconds=(starts_at + dt.timedelta(days=7) - now).total_seconds())
    session_day = starts_at.astimezone(zone("America/Los_Angeles")).date()
    monday = session_day - dt.timedelta(days=session_day.weekday())

    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        response = await clinician.get("/outcomes")
        assert response.status == 200
        page = await response.text()
        assert f"last full week, {monday.strftime('%b')} {monday.day}" in page
        row = _row(page, "Avery")
        assert "18 → 4" in row and "(-14)" in row and "12 → 11" in row and "(-1)" in row
        assert "reliably improved" in row and "remission" in row
        assert "1.5 h of 9 hours" in row and "below threshold" in row
        row = _row(page, "Blake")
        assert "8 → 15" in row and "(+7)" in row and "reliably worse" in row
        assert "0.0 h of 9 hours" in row
        row = _row(page, "Cameron")
        assert "10<br>" in row and "not enough scores" in row
        # Worse first by default; sorting by any column, and refusing an unknown one.
        names = re.findall(r"<td><a href=\"/patients/[^\"]+\">(\w+)</a></td>", page)
        assert names[0] == "Blake"
        page = await (await clinician.get("/outcomes?sort=phq9&dir=asc")).text()
        names = re.findall(r"<td><a href=\"/patients/[^\"]+\">(\w+)</a></td>", page)
        assert names[:2] == ["Avery", "Blake"]  # -14, then +7; no change last
        bad = await clinician.get("/outcomes?sort=secret")
        assert bad.status == 400
        assert "sort must be one of" in await bad.text()
        assert (await clinician.get("/outcomes?dir=sideways")).status == 400
    viewed = await _audit(server, "outcomes.viewed")
    assert len(viewed) == 2 and viewed[0].detail["patients"] == 8
    assert viewed[0].detail["week"] == monday.isoformat()

    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        assert (await supervisor.get("/outcomes")).status == 403


async def test_a_clinician_sees_only_their_own_patients_on_the_outcomes_page(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        made = await admin.post(
            "/api/staff",
            json={
                "program_id": demo["program"]["id"],
                "email": "new@demo.iop.example",
                "display_name": "New Clinician",
                "role": "clinician",
                "password": "a long enough password",
            },
        )
        new_id_ = (await made.json())["id"]
        page = await (await admin.get("/outcomes")).text()
        assert all(p["display_name"] in page for p in _patients(demo))
    secret = await enrol_totp(server, new_id_)
    async with await signed_in(
        server, "new@demo.iop.example", "a long enough password", secret
    ) as other:
        page = await (await other.get("/outcomes")).text()
        assert "No patients on your caseload yet." in page
        assert "Avery" not in page
        assert (await other.get(f"/patients/{_patients(demo)[1]['id']}/aftercare")).status == 404


AFTERCARE = {
    "step_down": "php",
    "step_down_note": "Example PHP, starts Monday",
    "fu1_date": "",
    "fu1_provider": "Dr. Example, psychiatry",
    "fu1_phone": "(555) 555-0150",
    "triggers": "Late nights alone",
    "warning_signs": "Skipping meals",
    "coping": "Walk; thought record",
    "people": "My brother",
    "local_crisis_line": "",
    "other_resources": "",
}


async def test_staff_save_versions_of_the_aftercare_plan_and_the_patient_reads_and_downloads_it(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    blake = _patients(demo)[1]
    path = f"/patients/{blake['id']}/aftercare"
    today = server.app[CLOCK].now().astimezone(zone("America/Los_Angeles")).date()
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(path)).text()
        assert "No aftercare plan yet." in page
        # The demo's home addresses end in "(example)", so no ZIP is read from them.
        assert "No ZIP code on file for this patient." in page
        async with server.app[ENGINE].begin() as conn:
            await checkin_safety.save_safety_check(
                conn,
                server.keyring,
                session_id=blake["join_session_id"],
                patient_id=blake["id"],
                answers={
                    "address": "1 Sample Road, Example Valley, CA 00000",
                    "county": "Example County",
                    "callback_phone": "(555) 010-0150",
                    "support_reachable": "yes",
                    "private_space": True,
                    "same_as_last_time": False,
                },
                now=server.app[CLOCK].now(),
                recorded_by=None,
            )
        page = await (await clinician.get(path)).text()
        # The directory's only rows there are examples: fictional numbers are never offered.
        assert "Only an example (fictional) directory row matches ZIP 00000" in page
        assert 'name="local_crisis_line" type="tel" maxlength="32" value=""' in page
        token = CSRF.search(page).group(1)  # type: ignore[union-attr]
        # Every field is checked; nothing is stored from a refused form.
        bad = await clinician.post(
            path,
            data={
                **AFTERCARE,
                "csrf_token": token,
                "step_down": "beach",
                "fu1_date": "next week",
                "fu1_phone": "911",
                "fu2_provider": "Someone",
            },
        )
        assert bad.status == 422
        text = await bad.text()
        assert "choose a step-down level from the list" in text
        assert "enter the date as YYYY-MM-DD" in text
        assert "US phone number" in text
        assert 'id="e-fu2_date"' in text and 'id="e-fu2_phone"' in text
        assert "Someone" in text  # what was typed stays in the form
        # Without the form token nothing is saved either.
        assert (await clinician.post(path, data=AFTERCARE)).status == 400
        plan_page = await (await clinician.get(f"/patients/{blake['id']}/safety-plan")).text()
        await clinician.post(
            f"/patients/{blake['id']}/safety-plan",
            data={
                "csrf_token": CSRF.search(plan_page).group(1),  # type: ignore[union-attr]
                "warning_signs": "Not sleeping",
                "professionals": "988 and the program",
            },
        )
        form = {
            **AFTERCARE,
            "csrf_token": token,
            "fu1_date": (today + dt.timedelta(days=7)).isoformat(),
        }
        saved = await clinician.post(path, data=form, allow_redirects=False)
        assert saved.status == 303
        assert saved.headers["Location"] == f"{path}?saved=1"
        page = await (await clinician.get(f"{path}?saved=1")).text()
        assert "Saved as version 1" in page and "Dr. Example, psychiatry" in page
        form["step_down"] = "standard_outpatient"
        assert (await clinician.post(path, data=form, allow_redirects=False)).status == 303
    async with server.app[ENGINE].connect() as conn:
        rows = list(
            await conn.execute(
                sa.select(aftercare_plans).where(aftercare_plans.c.patient_id == blake["id"])
            )
        )
    assert sorted(r.version for r in rows) == [1, 2]
    assert all("Dr. Example" not in r.plan_enc and "brother" not in r.plan_enc for r in rows)
    recorded = await _audit(server, "aftercare.recorded")
    assert [r.detail["version"] for r in recorded] == [1, 2]
    assert recorded[0].detail["safety_plan_version"] == 1
    assert await _audit(server, "aftercare.read")

    phone = server.client()
    try:
        assert (await phone.get(blake["join_url"])).status == 200
        home = await (await phone.get("/join")).text()
        assert 'href="/my/aftercare"' in home and 'href="/my/safety-plan"' in home
        mine = await (await phone.get("/my/aftercare")).text()
        assert "Standard outpatient care" in mine and "Version 2" in mine
        assert "Dr. Example, psychiatry" in mine and "(555) 555-0150" in mine
        assert 'href="tel:988"' in mine and "Not sleeping" in mine
        assert 'name="viewport"' in mine
        download = await phone.get("/my/aftercare/download")
        assert download.status == 200
        assert download.headers["Content-Disposition"] == (
            'attachment; filename="aftercare-plan-v2.txt"'
        )
        assert download.headers["Cache-Control"] == "no-store"
        body = await download.text()
        assert "988" in body and "Dr. Example, psychiatry" in body
        assert "Not sleeping" in body and "(555) 010-0100" in body
        safety = await (await phone.get("/my/safety-plan")).text()
        assert "Not sleeping" in safety and 'href="tel:988"' in safety
        assert "<form" not in safety.split("help-private")[0]  # read-only
        # The private "I need help" is on both pages and comes back to them.
        assert 'name="back" value="/my/safety-plan"' in safety
        assert 'name="back" value="/my/aftercare"' in mine
    finally:
        await phone.close()
    for action in (
        "aftercare.patient_read",
        "aftercare.patient_download",
        "safety.plan_patient_read",
    ):
        rows = await _audit(server, action)
        assert len(rows) == 1 and rows[0].actor_type == "patient"
        assert rows[0].actor_id == blake["id"] and rows[0].target_id == blake["id"]


async def test_a_patient_sees_only_their_own_plan_and_nothing_without_their_link(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    blake, riley = _patients(demo)[1], _patients(demo)[-1]
    stranger = server.client()
    phone = server.client()
    try:
        for path in ("/my/aftercare", "/my/aftercare/download", "/my/safety-plan"):
            assert (await stranger.get(path)).status == 401
        assert (await phone.get(blake["join_url"])).status == 200
        # The demo's aftercare plan is Riley's; Blake has none yet.
        mine = await (await phone.get("/my/aftercare")).text()
        assert "has not written your aftercare plan yet" in mine
        assert "Example Outpatient Clinic" not in mine and 'href="tel:988"' in mine
        assert (await phone.get("/my/aftercare/download")).status == 404
        safety = await (await phone.get("/my/safety-plan")).text()
        assert "have not written a safety plan here yet" in safety and "988" in safety
        assert (await phone.get(riley["join_url"])).status == 200
        mine = await (await phone.get("/my/aftercare")).text()
        assert "Example Outpatient Clinic" in mine and "Staying in bed past noon" in mine
    finally:
        await stranger.close()
        await phone.close()
