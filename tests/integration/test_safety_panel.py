"""The crisis event page and its safety panel on a real server: who opens it, what it shows,
what each view leaves in the audit log, break-glass and its review."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import aiohttp
import sqlalchemy as sa
from structlog.testing import capture_logs

from crisis.directory import DirectoryEntry
from crisis.safety_plan import parse_plan
from rooms.schedule import zone
from server.appkeys import CLOCK, ENGINE
from server.catalog import patients as catalog_patients
from server.catalog.schemas import PatientIn, SupportPerson
from server.crisis import breakglass, safety_data
from server.directory import store as directory_store
from server.storage.tables import audit_log, break_glass, programs
from tests.conftest import (
    CSRF,
    RunningServer,
    enrol_totp,
    flag_first_patient,
    give_checkin,
    give_consents,
    signed_in,
    staff_login,
)

SUPPORT_PHONE = "(555) 010-0177"
ADDRESS = "1 Example Street, Fresno, CA 93701"  # give_checkin's confirmed address
PSAP_ZIP = "5595550131"
PSAP_COUNTY = "5595550132"


def _target(demo: dict[str, Any], index: int = 0) -> dict[str, str]:
    patient = demo["groups"][0]["patients"][index]
    return {"patient_id": patient["id"], "session_id": patient["join_session_id"]}


async def _prepare(server: RunningServer, demo: dict[str, Any], *, release: bool = True) -> None:
    """A checked-in patient with a support person, a safety plan, and directory rows for the
    confirmed ZIP (verified long ago) and its county (fresh)."""
    target = _target(demo)
    now = server.app[CLOCK].now()
    await give_checkin(server, target["patient_id"], target["session_id"])
    async with server.app[ENGINE].begin() as conn:
        # Ages count in the program's own calendar, as the page counts them.
        time_zone = (await conn.execute(sa.select(programs.c.time_zone))).scalar_one()
        today = now.astimezone(zone(time_zone)).date()
        record = await catalog_patients.get_patient(conn, server.keyring, target["patient_id"])
        assert record is not None
        fields = {k: record[k] for k in PatientIn.model_fields if k in record}
        fields["support_person"] = SupportPerson(
            name="Robin Support", relationship="sister", phone=SUPPORT_PHONE
        )
        fields["support_release"] = release
        fields["alternate_phone"] = "(555) 010-0188"
        await catalog_patients.update_patient(
            conn, server.keyring, target["patient_id"], PatientIn(**fields)
        )
        common = {
            "state": "CA",
            "county": "Fresno",
            "crisis_line": "5595550133",
            "mobile_crisis": None,
            "ed_name": "Example Fresno Medical Center (fictional)",
            "ed_address": "9 Sample Road, Fresno, CA",
            "ed_phone": "5595550134",
            "police_nonemergency": "5595550135",
            "owner": "Test rows",
            "example": True,
        }
        stale = DirectoryEntry(
            zip="93701",
            psap_phone=PSAP_ZIP,
            verified_on=today - dt.timedelta(days=400),
            **common,
        )
        fresh = DirectoryEntry(
            zip=None,
            psap_phone=PSAP_COUNTY,
            verified_on=today - dt.timedelta(days=3),
            **common,
        )
        await directory_store.create(conn, stale, None, now)
        await directory_store.create(conn, fresh, None, now)
        plan = parse_plan(
            {
                "warning_signs": "Not sleeping, pulling away from people",
                "internal_coping": "Walk the dog",
                "professionals": "Call 988; the clinic line",
            }
        )
        await safety_data.save_plan(conn, server.keyring, target["patient_id"], plan, None, now)


async def _new_staff(
    server: RunningServer, demo: dict[str, Any], role: str, name: str
) -> aiohttp.ClientSession:
    """A staff member of the demo program who is on no session and no on-call shift."""
    email = f"{name}@demo.iop.example"
    password = f"a long password for {name}"
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        created = await admin.post(
            "/api/staff",
            json={
                "program_id": demo["program"]["id"],
                "email": email,
                "display_name": name.title(),
                "role": role,
                "password": password,
            },
        )
        assert created.status == 201, await created.text()
        staff_id = (await created.json())["id"]
    secret = await enrol_totp(server, staff_id)
    return await signed_in(server, email, password, secret)


async def _audit(server: RunningServer, action: str) -> list[Any]:
    async with server.app[ENGINE].connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(audit_log)
                    .where(audit_log.c.action == action)
                    .order_by(audit_log.c.seq)
                )
            ).all()
        )


def _token(html: str) -> str:
    found = CSRF.search(html)
    assert found
    return found.group(1)


async def test_the_event_page_shows_the_safety_panel_and_audits_every_view(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await _prepare(server, demo)
    with capture_logs() as logs:
        async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
            event_id = await flag_first_patient(clinician, demo)
            first = await clinician.get(f"/crisis/events/{event_id}")
            html = await first.text()
            again = await clinician.get(f"/crisis/events/{event_id}")
            assert again.status == 200
    assert first.status == 200, html
    assert "Do not wait for an acknowledgement to call 911 when danger is imminent." in html
    assert ADDRESS in html
    # The session phone, backup and alternate phones are one-tap links.
    assert 'href="tel:+15550100150"' in html
    assert 'href="tel:+15550100101"' in html and 'href="tel:+15550100188"' in html
    assert "Robin Support" in html and 'href="tel:+15550100177"' in html
    assert "release signed" in html
    # Local numbers for the confirmed ZIP first, with the 911 trap spelled out.
    assert html.index("(559) 555-0131") < html.index("(559) 555-0132")
    assert "reaches your own dispatch center" in html
    assert "stale: verified 400 days ago" in html
    assert "EXAMPLE - not real numbers" in html
    assert 'href="tel:988"' in html and "1-800-222-1222" in html
    assert "1. Warning signs" in html and "Walk the dog" in html
    assert "Acknowledge by" in html
    # Part 2 applies to substance-use programs only; the demo is a mental-health program.
    assert "Part 2" not in html
    views = await _audit(server, "safety.view")
    assert len(views) == 2
    assert views[0].target_id == _target(demo)["patient_id"]
    assert views[0].detail == {"event_id": event_id, "access": "member"}
    # No PHI in the logs: not the address, phones, support person or plan.
    text = repr(logs)
    # Phones as written and as digits (not 4-digit runs alone: hex request ids can hold them).
    for secret in (
        "Example Street",
        "010-0150",
        "Robin",
        "010-0177",
        "0100177",
        "Walk the dog",
        "93701",
    ):
        assert secret not in text


async def test_no_release_means_do_not_contact(server: RunningServer, demo: dict[str, Any]) -> None:
    await _prepare(server, demo, release=False)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
        html = await (await clinician.get(f"/crisis/events/{event_id}")).text()
    assert "No release: do not contact." in html
    assert "tel:+15550100177" not in html


async def test_withdrawing_the_emergency_plan_consent_ends_the_release_on_the_panel_at_once(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await _prepare(server, demo)
    patient_id = _target(demo)["patient_id"]
    await give_consents(server, patient_id, _target(demo)["session_id"])
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
        before = await (await clinician.get(f"/crisis/events/{event_id}")).text()
        assert "release signed" in before and 'href="tel:+15550100177"' in before
        token = _token(await (await clinician.get(f"/patients/{patient_id}")).text())
        withdrawn = await clinician.post(
            f"/patients/{patient_id}/consents/revoke",
            data={"csrf_token": token, "kind": "emergency_plan", "reason": "patient asked"},
        )
        assert withdrawn.status == 200
        after = await (await clinician.get(f"/crisis/events/{event_id}")).text()
    async with server.app[ENGINE].connect() as conn:
        time_zone = (await conn.execute(sa.select(programs.c.time_zone))).scalar_one()
    today = server.app[CLOCK].now().astimezone(zone(time_zone)).date().isoformat()
    assert f"Release withdrawn {today}: do not contact." in after
    assert "release signed" not in after
    assert "tel:+15550100177" not in after  # the support person's phone is no longer offered
    assert "Robin Support" in after  # who it is stays visible, with the warning


async def test_a_clinician_not_on_the_event_is_refused_and_cannot_break_glass(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await _prepare(server, demo)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
    async with await _new_staff(server, demo, "clinician", "outsider") as outsider:
        page = await outsider.get(f"/crisis/events/{event_id}")
        html = await page.text()
        assert page.status == 403
        assert "Robin" not in html and "Example Street" not in html
        token = _token(await (await outsider.get("/dashboard")).text())
        glass = await outsider.post(
            f"/crisis/events/{event_id}/break-glass",
            data={"csrf_token": token, "reason": "I want to see this patient's record"},
            allow_redirects=False,
        )
        assert glass.status == 403
    refused = await _audit(server, "crisis.access_refused")
    assert [r.target_id for r in refused] == [event_id]
    assert await _audit(server, "safety.view") == []


async def test_a_supervisor_not_on_the_event_breaks_glass_with_a_reason(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await _prepare(server, demo)
    reason = "Primary on-call unreachable and the sister Robin called the clinic"
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
    with capture_logs() as logs:
        async with await _new_staff(server, demo, "supervisor", "backupsup") as supervisor:
            page = await supervisor.get(f"/crisis/events/{event_id}")
            html = await page.text()
            assert page.status == 403
            assert "Break the glass" in html and "Robin" not in html
            token = _token(html)
            short = await supervisor.post(
                f"/crisis/events/{event_id}/break-glass",
                data={"csrf_token": token, "reason": "urgent"},
                allow_redirects=False,
            )
            assert short.status == 422
            assert "at least 10 characters" in await short.text()
            opened = await supervisor.post(
                f"/crisis/events/{event_id}/break-glass",
                data={"csrf_token": token, "reason": reason},
                allow_redirects=False,
            )
            assert opened.status == 303
            assert opened.headers["Location"] == f"/crisis/events/{event_id}#safety"
            assert reason not in opened.headers["Location"]
            panel = await supervisor.get(f"/crisis/events/{event_id}")
            shown = await panel.text()
            assert panel.status == 200
            assert "Break-glass access" in shown and "(559) 555-0131" in shown
            review = await supervisor.get("/crisis/break-glass")
            listed = await review.text()
            assert review.status == 200 and reason in listed and "Backupsup" in listed
    loud = await _audit(server, "safety.break_glass")
    assert len(loud) == 1 and loud[0].target_id == _target(demo)["patient_id"]
    assert loud[0].detail["event_id"] == event_id
    assert reason not in repr(loud[0]._mapping)
    views = await _audit(server, "safety.view")
    assert [v.detail["access"] for v in views] == ["break_glass"]
    async with server.app[ENGINE].connect() as conn:
        stored = (await conn.execute(sa.select(break_glass))).one()
    assert reason not in stored.reason_enc
    assert reason not in repr(logs) and "Robin" not in repr(logs)
    # The grant is for a short window only.
    async with server.app[ENGINE].connect() as conn:
        now = server.app[CLOCK].now()
        assert await breakglass.active(conn, stored.staff_id, event_id, now) is not None
        later = now + dt.timedelta(minutes=61)
        assert await breakglass.active(conn, stored.staff_id, event_id, later) is None


async def test_step_forms_validate_through_the_ledger_and_land_on_the_timeline(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await _prepare(server, demo)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
        html = await (await clinician.get(f"/crisis/events/{event_id}")).text()
        token = _token(html)
        bad = await clinician.post(
            f"/crisis/events/{event_id}/steps",
            data={
                "csrf_token": token,
                "kind": "call_logged",
                "call_logged.number": "not a phone",
                "call_logged.agency": "Fresno County dispatch",
                "call_logged.started_at": "2026-12-01T18:30",
            },
            allow_redirects=False,
        )
        body = await bad.text()
        assert bad.status == 422
        assert re.search(r'id="e-f-call_logged-number"[^>]*>must be a phone number', body)
        assert 'value="Fresno County dispatch"' in body
        ack = await clinician.post(
            f"/crisis/events/{event_id}/ack",
            data={"csrf_token": token, "acknowledged.note": ""},
            allow_redirects=False,
        )
        assert ack.status == 303
        good = await clinician.post(
            f"/crisis/events/{event_id}/steps",
            data={
                "csrf_token": token,
                "kind": "call_logged",
                "call_logged.number": "(559) 555-0131",
                "call_logged.agency": "Fresno County dispatch",
                "call_logged.incident_number": "INC-42",
                "call_logged.started_at": "2026-12-01T18:30",
                "call_logged.ended_at": "2026-12-01T18:36",
            },
            allow_redirects=False,
        )
        assert good.status == 303, await good.text()
        follow = await clinician.post(
            f"/crisis/events/{event_id}/steps",
            data={"csrf_token": token, "kind": "follow_up_task", "follow_up_task.note": "call"},
            allow_redirects=False,
        )
        assert follow.status == 303
        page = await (await clinician.get(f"/crisis/events/{event_id}")).text()
    assert "call logged" in page and "INC-42" in page and "follow up task" in page
    assert "Acknowledge by" not in page


async def test_a_clinician_records_a_new_safety_plan_version_shown_on_the_panel(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await _prepare(server, demo)
    patient_id = _target(demo)["patient_id"]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        form = await clinician.get(f"/patients/{patient_id}/safety-plan")
        html = await form.text()
        assert form.status == 200 and "Walk the dog" in html and "version 1" in html
        empty = await clinician.post(
            f"/patients/{patient_id}/safety-plan",
            data={"csrf_token": _token(html)},
            allow_redirects=False,
        )
        assert empty.status == 422 and "write at least one step" in await empty.text()
        saved = await clinician.post(
            f"/patients/{patient_id}/safety-plan",
            data={"csrf_token": _token(html), "safe_environment": "Medicines locked away"},
            allow_redirects=False,
        )
        assert saved.status == 303
        event_id = await flag_first_patient(clinician, demo)
        page = await (await clinician.get(f"/crisis/events/{event_id}")).text()
    assert "Version 2" in page and "Medicines locked away" in page
    assert "Walk the dog" not in page
    recorded = await _audit(server, "safety.plan_recorded")
    assert recorded[0].detail == {"version": 2}


async def test_an_open_event_page_learns_that_someone_else_acted_on_the_event(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    """The page polls the event's state and step count (no PHI) and says when they move."""
    await _prepare(server, demo)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        event_id = await flag_first_patient(clinician, demo)
        html = await (await clinician.get(f"/crisis/events/{event_id}")).text()
        shown = re.search(r'id="event-changed"[^>]*data-state="(\w+)" data-steps="(\d+)"', html)
        assert shown is not None
        version = await clinician.get(f"/api/crisis/events/{event_id}/version")
        assert version.status == 200
        before = await version.json()
        assert before == {"state": shown.group(1), "steps": int(shown.group(2))}
        async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
            acked = await supervisor.post(f"/api/crisis/events/{event_id}/ack", json={})
            assert acked.status == 200, await acked.text()
        after = await (await clinician.get(f"/api/crisis/events/{event_id}/version")).json()
        assert after["state"] == "acknowledged" and after["steps"] > before["steps"]
    async with await _new_staff(server, demo, "clinician", "bystander") as outsider:
        refused = await outsider.get(f"/api/crisis/events/{event_id}/version")
        assert refused.status == 403
