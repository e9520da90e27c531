"""The pre-session check-in: the gate, "same as last time", cadence, levels and staff views."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from server.accounts.joinlinks import patient_sessions
from server.appkeys import CLOCK, ENGINE
from server.checkin import safety_checks as checkin_safety
from server.checkin import store as checkin_store
from server.storage.tables import crisis_events, crisis_requests, safety_checks, screenings
from tests.conftest import CSRF, RunningServer, give_consents, signed_in, staff_login

# No to every question: what a calm check-in with every instrument due looks like.
ALL_CLEAR = {
    **{f"phq9_{n}": "0" for n in range(1, 10)},
    **{f"gad7_{n}": "0" for n in range(1, 8)},
    "cssrs_q1": "no",
    "cssrs_q2": "no",
    "cssrs_q6": "no",
}
SAFETY = {
    "where": "new",
    "address": "77 Checkin Road, Fresno, CA 93701",
    "zip": "93701",
    "county": "Fresno",
    "callback_phone": "(555) 010-0177",
    "support_reachable": "yes",
    "private_space": "yes",
}


def _patient(demo: dict[str, Any], index: int = 0) -> dict[str, str]:
    return demo["groups"][0]["patients"][index]


async def _ready(server: RunningServer, patient: dict[str, str]) -> aiohttp.ClientSession:
    await give_consents(server, patient["id"], patient["join_session_id"])
    phone = server.client()
    assert (await phone.get(patient["join_url"])).status == 200
    return phone


async def _post(
    phone: aiohttp.ClientSession, path: str, form: dict[str, str]
) -> aiohttp.ClientResponse:
    page = await (await phone.get("/checkin")).text()
    token = CSRF.search(page)
    assert token is not None, page[:300]
    response = await phone.post(
        path, data={"csrf_token": token.group(1), **form}, allow_redirects=False
    )
    await response.read()
    return response


async def _answer_all(phone: aiohttp.ClientSession, answers: dict[str, str]) -> str:
    for _ in range(60):
        page = await phone.get("/checkin", allow_redirects=False)
        if page.status == 303:
            return "done"
        text = await page.text()
        token = CSRF.search(text)
        assert token is not None
        intro = re.search(r'name="introduced" value="([a-z0-9_]+)"', text)
        if intro is not None:  # the screen before the suicide questions
            data = {"csrf_token": token.group(1), "introduced": intro.group(1)}
            await phone.post("/checkin/answer", data=data, allow_redirects=False)
            continue
        qid = re.search(r'name="qid" value="([a-z0-9_]+)"', text)
        assert qid is not None, text[:400]
        value = answers.get(qid.group(1), "no" if qid.group(1).startswith("cssrs") else "0")
        response = await phone.post(
            "/checkin/answer",
            data={"csrf_token": token.group(1), "qid": qid.group(1), "answer": value},
            allow_redirects=False,
        )
        if response.status == 200:
            return await response.text()
    raise AssertionError("the check-in never ended")


async def test_the_room_waits_for_the_safety_check_by_page_and_by_socket(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _ready(server, patient) as phone:
        room = await phone.get("/room", allow_redirects=False)
        assert room.headers["Location"] == "/checkin"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await phone.ws_connect(f"/ws/rooms/{patient['join_session_id']}")
        assert refused.value.status == 403
        assert (await _post(phone, "/checkin/safety", SAFETY)).status == 303
        # The safety check alone is not enough while a screening is due.
        assert (await phone.get("/room", allow_redirects=False)).headers["Location"] == "/checkin"
        closing = await _answer_all(phone, {})
        assert "Thank you for checking in" in closing and "988" in closing
        assert (await phone.get("/room", allow_redirects=False)).status == 200
        ws = await phone.ws_connect(f"/ws/rooms/{patient['join_session_id']}")
        await ws.close()


async def test_same_as_last_time_is_offered_but_never_assumed(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with server.app[ENGINE].begin() as conn:
        upcoming = await patient_sessions(conn, patient["id"], server.app[CLOCK].now())
        # Another session's check-in stands for "last time".
        earlier = next(s.session_id for s in upcoming if s.session_id != patient["join_session_id"])
        await checkin_safety.save_safety_check(
            conn,
            server.keyring,
            session_id=earlier,
            patient_id=patient["id"],
            answers={**SAFETY, "private_space": True, "same_as_last_time": False},
            now=server.app[CLOCK].now() - dt.timedelta(days=2),
            recorded_by=None,
        )
    async with await _ready(server, patient) as phone:
        page = await (await phone.get("/checkin")).text()
        assert "At the same place as last time: 77 Checkin Road" in page
        assert 'name="address" value=""' in page  # not silently filled in
        without = await _post(phone, "/checkin/safety", {**SAFETY, "where": "", "address": ""})
        assert without.status == 400
        same = await _post(
            phone, "/checkin/safety", {**SAFETY, "where": "same", "address": "", "county": ""}
        )
        assert same.status == 303
    async with server.app[ENGINE].connect() as conn:
        check = await checkin_safety.safety_check_for(
            conn, patient["join_session_id"], patient["id"]
        )
        assert check is not None and check.zip == "93701" and check.county == "Fresno"
        history = await checkin_store.history(conn, server.keyring, patient["id"])
    assert history["checks"][-1]["answers"]["same_as_last_time"] is True


async def test_levels_become_escalations_or_review_tasks(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    cases = [
        (0, {"phq9_9": "1", "cssrs_q1": "yes"}, ("review_task", "low")),
        (1, {"cssrs_q2": "yes", "cssrs_q3": "yes"}, ("event", "moderate")),
        (2, {"cssrs_q6": "yes", "cssrs_q6b": "yes"}, ("event", "high")),
        (3, {}, None),
    ]
    for index, answers, expected in cases:
        patient = _patient(demo, index)
        async with await _ready(server, patient) as phone:
            await _post(phone, "/checkin/safety", SAFETY)
            closing = await _answer_all(phone, answers)
            assert "risk" not in closing.lower()
        async with server.app[ENGINE].connect() as conn:
            tasks = (
                await conn.execute(
                    sa.select(crisis_requests.c.kind, crisis_requests.c.level).where(
                        crisis_requests.c.patient_id == patient["id"],
                        # A low answer's review task is closed once a later one opens an event.
                        crisis_requests.c.closed_at.is_(None),
                    )
                )
            ).all()
            events = (
                await conn.execute(
                    sa.select(crisis_events.c.trigger, crisis_events.c.level).where(
                        crisis_events.c.patient_id == patient["id"]
                    )
                )
            ).all()
        found = [tuple(r) for r in tasks] + [("event", level) for _trigger, level in events]
        assert found == ([expected] if expected else [])
        assert all(trigger == "screening" for trigger, _level in events)


async def test_weekly_instruments_are_not_asked_again_within_the_week(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    now = server.app[CLOCK].now()
    async with server.app[ENGINE].begin() as conn:
        sessions = await patient_sessions(conn, patient["id"], now)
        first = await checkin_store.plan_for(conn, sessions[0].session_id, patient["id"], now)
        assert (first.phq9, first.gad7, first.cssrs) == (True, True, True)
        await checkin_store.save_screening(
            conn,
            server.keyring,
            session_id=sessions[0].session_id,
            patient_id=patient["id"],
            plan=first,
            answers=ALL_CLEAR,
            now=now,
        )
        later = await checkin_store.plan_for(conn, sessions[1].session_id, patient["id"], now)
        assert (later.phq9, later.gad7, later.cssrs) == (False, False, True)
        week = await checkin_store.plan_for(
            conn, sessions[1].session_id, patient["id"], now + dt.timedelta(days=8)
        )
        assert week.phq9 and week.gad7


async def test_staff_read_the_history_and_the_read_is_audited(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _ready(server, patient) as phone:
        await _post(phone, "/checkin/safety", SAFETY)
        await _answer_all(phone, {"phq9_1": "3", "gad7_2": "2"})
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/patients/{patient['id']}/measures")).text()
        assert "<svg" in page and "PHQ-9 and GAD-7 totals over time" in page
        assert "77 Checkin Road" in page and "3 (minimal)" in page
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        assert (await supervisor.get(f"/patients/{patient['id']}/measures")).status == 403


async def test_a_clinician_takes_the_safety_check_by_phone(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/patients/{patient['id']}")).text()
        token = CSRF.search(page)
        assert token is not None
        recorded = await clinician.post(
            f"/patients/{patient['id']}/safety-check",
            data={"csrf_token": token.group(1), "session_id": patient["join_session_id"], **SAFETY},
        )
        assert recorded.status == 200
        assert "(by phone)" in await recorded.text()
    async with server.app[ENGINE].connect() as conn:
        rows = (await conn.execute(sa.select(safety_checks.c.recorded_by))).all()
        assert rows[0].recorded_by is not None
        stored = repr((await conn.execute(sa.select(safety_checks))).all())
        stored += repr((await conn.execute(sa.select(screenings))).all())
    assert "Checkin Road" not in stored  # sealed at rest


async def test_programs_and_patients_set_how_often_each_questionnaire_is_asked(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    program_id = demo["program"]["id"]
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        page = await (await admin.get(f"/admin/programs/{program_id}")).text()
        token = CSRF.search(page)
        assert token is not None
        form = {
            "csrf_token": token.group(1),
            "name": "Demo Evening IOP (example data)",
            "kind": "mental_health",
            "time_zone": "America/Los_Angeles",
            "phone": "(555) 010-0100",
            "join_link_mode": "per_session",
        }
        bad = await admin.post(
            f"/admin/programs/{program_id}", data={**form, "screening_cadence_phq9": "often"}
        )
        assert bad.status == 400 and 'id="e-screening_cadence_phq9"' in await bad.text()
        saved = await admin.post(
            f"/admin/programs/{program_id}",
            data={**form, "screening_cadence_phq9": "0", "screening_cadence_gad7": "30"},
            allow_redirects=False,
        )
        assert saved.status == 303
        edit = await (await admin.get(f"/admin/patients/{patient['id']}/edit")).text()
        token = CSRF.search(edit)
        assert token is not None
        override = await admin.post(
            f"/admin/patients/{patient['id']}/edit",
            data={
                "csrf_token": token.group(1),
                "legal_name": "Avery Example",
                "display_name": "Avery",
                "time_zone": "America/Los_Angeles",
                "screening_cadence_cssrs": "7",
            },
            allow_redirects=False,
        )
        assert override.status == 303
    now = server.app[CLOCK].now()
    async with server.app[ENGINE].connect() as conn:
        sessions = await patient_sessions(conn, patient["id"], now)
        plan = await checkin_store.plan_for(conn, sessions[0].session_id, patient["id"], now)
    assert (plan.phq9, plan.gad7, plan.cssrs) == (True, True, True)
    other = _patient(demo, 1)
    async with server.app[ENGINE].begin() as conn:
        await checkin_store.save_screening(
            conn,
            server.keyring,
            session_id=sessions[0].session_id,
            patient_id=patient["id"],
            plan=plan,
            answers=ALL_CLEAR,
            now=now,
        )
        later = await checkin_store.plan_for(conn, sessions[1].session_id, patient["id"], now)
        everyone_else = await checkin_store.plan_for(
            conn, other["join_session_id"], other["id"], now
        )
    # PHQ-9 every session now; GAD-7 monthly; C-SSRS weekly for this patient only.
    assert (later.phq9, later.gad7, later.cssrs) == (True, False, False)
    assert everyone_else.cssrs
