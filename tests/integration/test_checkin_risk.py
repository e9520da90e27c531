"""The check-in's risk paths: severe scores, answers acted on as they land, declining the
suicide items, and a closing page that fits what was said."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import aiohttp
import sqlalchemy as sa

from crisis.directory import DirectoryEntry
from server.appkeys import CLOCK, ENGINE
from server.directory import store as directory_store
from server.storage.tables import (
    checkin_progress,
    crisis_events,
    crisis_requests,
    programs,
    screenings,
)
from tests.conftest import CSRF, RunningServer, give_consents, signed_in, staff_login

SAFETY = {
    "where": "new",
    "address": "12 Risk Lane, Fresno, CA 93701",
    "zip": "93701",
    "county": "Fresno",
    "callback_phone": "(555) 010-0177",
    "support_reachable": "yes",
    "private_space": "yes",
}
QID = re.compile(r'name="qid" value="([a-z0-9_]+)"')
INTRODUCED = re.compile(r'name="introduced" value="([a-z0-9_]+)"')
# PHQ-9 24 and GAD-7 21 with item 9 at 0: severe, but no suicide item answered yes.
SEVERE = {
    **{f"phq9_{n}": "3" for n in range(1, 9)},
    "phq9_9": "0",
    **{f"gad7_{n}": "3" for n in range(1, 8)},
}
# Item 9 opens the C-SSRS; yes to Q4 (intent) makes the screen high at that answer.
UP_TO_INTENT = {
    "phq9_9": "1",
    "cssrs_q1": "yes",
    "cssrs_q2": "yes",
    "cssrs_q3": "no",
    "cssrs_q4": "yes",
}


def _patient(demo: dict[str, Any], index: int = 0) -> dict[str, str]:
    return demo["groups"][0]["patients"][index]


async def _checked_in_safely(server: RunningServer, patient: dict[str, str]) -> Any:
    await give_consents(server, patient["id"], patient["join_session_id"])
    phone = server.client()
    assert (await phone.get(patient["join_url"])).status == 200
    page = await (await phone.get("/checkin")).text()
    token = CSRF.search(page)
    assert token is not None
    saved = await phone.post(
        "/checkin/safety", data={"csrf_token": token.group(1), **SAFETY}, allow_redirects=False
    )
    assert saved.status == 303
    return phone


async def _answer(
    phone: aiohttp.ClientSession, answers: dict[str, str], *, stop_after: str | None = None
) -> str:
    """Answer the check-in screen by screen (no to the rest); the last page's text."""
    for _ in range(60):
        page = await phone.get("/checkin", allow_redirects=False)
        if page.status == 303:
            return "done"
        text = await page.text()
        intro = INTRODUCED.search(text)
        if intro is not None:  # the introduction before the suicide questions: read, go on
            token = CSRF.search(text)
            assert token is not None
            data = {"csrf_token": token.group(1), "introduced": intro.group(1)}
            await phone.post("/checkin/answer", data=data, allow_redirects=False)
            continue
        found = QID.search(text)
        assert found is not None, text[:400]
        qid = found.group(1)
        default = "no" if qid.startswith("cssrs") or qid in ("sud_used", "sud_intoxicated") else "0"
        value = answers.get(qid, default)
        token = CSRF.search(text)
        assert token is not None
        response = await phone.post(
            "/checkin/answer",
            data={"csrf_token": token.group(1), "qid": qid, "answer": value},
            allow_redirects=False,
        )
        if response.status != 303 or qid == stop_after:
            return await response.text()
    raise AssertionError("the check-in never ended")


async def _concerns(server: RunningServer, patient_id: str) -> list[tuple[str, str]]:
    async with server.app[ENGINE].connect() as conn:
        tasks = await conn.execute(
            sa.select(crisis_requests.c.kind, crisis_requests.c.level).where(
                crisis_requests.c.patient_id == patient_id, crisis_requests.c.closed_at.is_(None)
            )
        )
        events = await conn.execute(
            sa.select(crisis_events.c.level).where(crisis_events.c.patient_id == patient_id)
        )
        return [(r.kind, r.level) for r in tasks] + [("event", r.level) for r in events]


async def _staff_view(
    server: RunningServer, demo: dict[str, Any], phone: aiohttp.ClientSession, room_id: str
) -> dict[str, Any]:
    """The check-in summary a clinician's room receives for this waiting patient."""
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        host = await clinician.ws_connect(f"/ws/rooms/{room_id}")
        await host.send_json({"type": "hello", "protocol": 1})
        ws = await phone.ws_connect(f"/ws/rooms/{room_id}")
        await ws.send_json({"type": "hello", "protocol": 1})
        while True:
            message = await host.receive_json()
            if message["type"] == "member" and message["member"]["presence"] == "waiting":
                break
        await ws.close()
        await host.close()
    return dict(message["member"]["staff_info"]["checkin"])


async def test_severe_scores_raise_a_review_task_and_a_staff_badge(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _checked_in_safely(server, patient) as phone:
        closing = await _answer(phone, SEVERE)
        assert "Thank you for checking in" in closing
        assert await _concerns(server, patient["id"]) == [("review_task", "low")]
        checkin = await _staff_view(server, demo, phone, patient["join_session_id"])
    assert checkin["level"] == "none"
    assert checkin["flags"] == ["severe PHQ-9", "severe GAD-7"]
    assert {"kind": "review_task", "level": "low"} in checkin["escalations"]


async def test_a_program_may_lower_the_severe_thresholds_but_never_raise_them(
    server: RunningServer, demo: dict[str, Any]
) -> None:
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
        looser = await admin.post(
            f"/admin/programs/{program_id}", data={**form, "severe_scores_phq9": "25"}
        )
        assert looser.status == 400 and 'id="e-severe_scores_phq9"' in await looser.text()
        stricter = await admin.post(
            f"/admin/programs/{program_id}",
            data={**form, "severe_scores_phq9": "15"},
            allow_redirects=False,
        )
        assert stricter.status == 303
        shown = await (await admin.get(f"/admin/programs/{program_id}")).text()
        assert 'name="severe_scores_phq9" type="text" value="15"' in shown
    patient = _patient(demo)
    # PHQ-9 16: "moderately severe" by the bands, severe for this program.
    answers = {**{f"phq9_{n}": "2" for n in range(1, 9)}, "phq9_9": "0"}
    async with await _checked_in_safely(server, patient) as phone:
        await _answer(phone, answers)
        checkin = await _staff_view(server, demo, phone, patient["join_session_id"])
    assert checkin["flags"] == ["severe PHQ-9"]
    assert await _concerns(server, patient["id"]) == [("review_task", "low")]


async def test_using_right_now_is_a_review_task_and_a_staff_badge(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.app[ENGINE].begin() as conn:
        await conn.execute(programs.update().values(kind="substance_use"))
    patient = _patient(demo)
    async with await _checked_in_safely(server, patient) as phone:
        await _answer(phone, {"sud_used": "yes", "sud_intoxicated": "yes"})
        assert await _concerns(server, patient["id"]) == [("review_task", "low")]
        checkin = await _staff_view(server, demo, phone, patient["join_session_id"])
    assert checkin["flags"] == ["using right now"]


async def test_a_high_answer_raises_an_event_at_once_and_survives_a_closed_tab(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _checked_in_safely(server, patient) as phone:
        await _answer(phone, UP_TO_INTENT, stop_after="cssrs_q4")
        # The patient closes the tab here: nothing was finished, the event is already open.
        assert await _concerns(server, patient["id"]) == [("event", "high")]
        async with server.app[ENGINE].connect() as conn:
            assert (await conn.execute(sa.select(screenings))).first() is None
            stored = (await conn.execute(sa.select(checkin_progress))).all()
        assert len(stored) == 1 and stored[0].raised_level == "high"
        assert "cssrs_q4" not in stored[0].answers_enc  # sealed at rest
        # Coming back resumes at the next question, not at the start.
        resumed = await (await phone.get("/checkin")).text()
        assert 'name="qid" value="cssrs_q5"' in resumed
        closing = await _answer(phone, {})
        assert "Thank you for checking in" in closing
    # Finishing does not open a second event, nor a review task for the earlier answers.
    assert await _concerns(server, patient["id"]) == [("event", "high")]


async def test_a_patient_may_talk_to_their_clinician_instead_of_the_suicide_items(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _checked_in_safely(server, patient) as phone:
        first = await (await phone.get("/checkin")).text()
        assert "I&#39;d rather talk to my clinician" not in first  # PHQ-9 item 1
        token = CSRF.search(first)
        assert token is not None
        refused = await phone.post(
            "/checkin/answer",
            data={"csrf_token": token.group(1), "qid": "phq9_1", "answer": "talk_to_clinician"},
        )
        assert refused.status == 400
        await _answer(phone, {"phq9_9": "1"}, stop_after="gad7_7")
        offered = await (await phone.get("/checkin")).text()
        assert 'value="cssrs_q1"' in offered and "rather talk to my clinician" in offered
        closing = await _answer(phone, {"cssrs_q1": "talk_to_clinician"})
        assert "Thank you for checking in" in closing
        assert "may call you now" in closing
        # The rest of the check-in is not asked: the waiting room is open.
        assert (await phone.get("/room", allow_redirects=False)).status == 200
        assert await _concerns(server, patient["id"]) == [("event", "moderate")]
        checkin = await _staff_view(server, demo, phone, patient["join_session_id"])
    assert checkin["level"] == "moderate"
    assert checkin["flags"] == ["declined the suicide screen"]
    assert checkin["escalations"][0]["kind"] == "event"


async def test_the_closing_page_after_a_high_screen_says_who_may_call_and_the_local_line(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    now = server.app[CLOCK].now()
    fresno = DirectoryEntry(
        state="CA",
        county="Fresno",
        zip=None,
        psap_phone="5595550131",
        crisis_line="5595550133",
        mobile_crisis=None,
        ed_name=None,
        ed_address=None,
        ed_phone=None,
        police_nonemergency=None,
        verified_on=now.date() - dt.timedelta(days=3),
        owner="Test",
    )
    async with server.app[ENGINE].begin() as conn:
        await directory_store.create(conn, fresno, None, now)
    high = _patient(demo)
    async with await _checked_in_safely(server, high) as phone:
        closing = await _answer(phone, {"cssrs_q6": "yes", "cssrs_q6b": "yes"})
    assert "Someone from your program may call you now at <strong>(555) 010-0177</strong>" in (
        closing
    )
    assert "(559) 555-0133" in closing and 'href="tel:988"' in closing
    assert 'href="tel:911"' in closing
    calm = _patient(demo, 1)
    async with await _checked_in_safely(server, calm) as phone:
        closing = await _answer(phone, {})
    assert "Thank you for checking in" in closing and 'href="tel:988"' in closing
    assert "may call you now" not in closing and "(559) 555-0133" not in closing
