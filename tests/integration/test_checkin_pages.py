"""The check-in pages as a patient sees them: the ZIP code, the location window, the C-SSRS
screens, and the private "I need help" on every page before the room."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from server.accounts.joinlinks import patient_sessions
from server.appkeys import CLOCK, ENGINE
from server.checkin import safety_checks as checkin_safety
from server.checkin import store as checkin_store
from server.storage.tables import (
    audit_log,
    crisis_events,
    crisis_steps,
    programs,
    safety_checks,
)
from tests.conftest import (
    CSRF,
    RunningServer,
    give_consents,
    signed_in,
    staff_login,
    start_server,
)

SAFETY = {
    "where": "new",
    "address": "15991 Red Hill Ave, Tustin, CA 92780",
    "county": "Orange",
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


async def _token(phone: aiohttp.ClientSession, path: str = "/checkin") -> str:
    page = await (await phone.get(path)).text()
    token = CSRF.search(page)
    assert token is not None, page[:300]
    return token.group(1)


async def _post(
    phone: aiohttp.ClientSession, path: str, form: dict[str, str], **headers: str
) -> tuple[int, str]:
    response = await phone.post(
        path,
        data={"csrf_token": await _token(phone), **form},
        allow_redirects=False,
        headers=headers,
    )
    return response.status, await response.text()


def _zip_value(page: str) -> str:
    found = re.search(r'name="zip" value="([^"]*)"', page)
    assert found is not None, "no ZIP field on the page"
    return found.group(1)


# ZIP code ------------------------------------------------------------------------------


async def test_the_zip_code_is_read_from_the_end_of_the_address_and_confirmed(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _ready(server, patient) as phone:
        # The street number is five digits too: the ZIP offered is the one at the end.
        status, page = await _post(phone, "/checkin/safety", SAFETY)
        assert status == 200  # a step of the form, not a mistake
        assert _zip_value(page) == "92780"
        assert "Check the ZIP code we read from the end of your address" in page
        assert "need attention" not in page and 'class="error"' not in page
        # Without a ZIP at the end there is nothing to guess: the patient types it.
        no_zip = {**SAFETY, "address": "15991 Red Hill Ave, Tustin"}
        status, page = await _post(phone, "/checkin/safety", no_zip)
        assert status == 400 and _zip_value(page) == ""
        assert "Type the 5-digit ZIP code" in page
        status, page = await _post(phone, "/checkin/safety", {**no_zip, "zip": "9278"})
        assert status == 400 and "A ZIP code is 5 digits" in page
        status, page = await _post(phone, "/checkin/safety", {**SAFETY, "zip": "15991"})
        assert status == 400 and "not the one at the end of your address" in page
        async with server.app[ENGINE].connect() as conn:
            stored = await conn.scalar(sa.select(sa.func.count()).select_from(safety_checks))
        assert stored == 0  # nothing is kept until the patient has confirmed a ZIP
        status, _ = await _post(phone, "/checkin/safety", {**SAFETY, "zip": "92780"})
        assert status == 303
    async with server.app[ENGINE].connect() as conn:
        check = await checkin_safety.safety_check_for(
            conn, patient["join_session_id"], patient["id"]
        )
        history = await checkin_store.history(conn, server.keyring, patient["id"])
    assert check is not None and check.zip == "92780" and check.county == "Orange"
    assert history["checks"][-1]["answers"]["zip"] == "92780"


async def test_same_as_last_time_shows_and_keeps_that_addresss_zip_code(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with server.app[ENGINE].begin() as conn:
        upcoming = await patient_sessions(conn, patient["id"], server.app[CLOCK].now())
        await checkin_safety.save_safety_check(
            conn,
            server.keyring,
            session_id=next(
                s.session_id for s in upcoming if s.session_id != patient["join_session_id"]
            ),
            patient_id=patient["id"],
            # A check from before the ZIP field: its ZIP is read from the address's end.
            answers={**SAFETY, "private_space": True, "same_as_last_time": False},
            now=server.app[CLOCK].now() - dt.timedelta(days=2),
            recorded_by=None,
        )
    async with await _ready(server, patient) as phone:
        page = await (await phone.get("/checkin")).text()
        assert "At the same place as last time: 15991 Red Hill Ave, Tustin, CA 92780" in page
        assert "(ZIP code 92780)" in page
        status, _ = await _post(
            phone, "/checkin/safety", {**SAFETY, "where": "same", "address": "", "county": ""}
        )
        assert status == 303
    async with server.app[ENGINE].connect() as conn:
        check = await checkin_safety.safety_check_for(
            conn, patient["join_session_id"], patient["id"]
        )
    assert check is not None and check.zip == "92780"


# The location window -------------------------------------------------------------------


@pytest.fixture
async def windowed(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningServer]:
    """A server with the location step's real default window (2 hours)."""
    running = await start_server(
        tmp_path / "data", sqlite_url, {"IOP_CHECKIN_LOCATION_WINDOW_MINUTES": "120"}
    )
    try:
        yield running
    finally:
        await running.runner.cleanup()


async def _standing_phone(
    server: RunningServer, demo: dict[str, Any], patient: dict[str, str]
) -> tuple[aiohttp.ClientSession, Any]:
    """A standing link opened on a phone, and the group session it will be for after the
    first has ended (so the clock can be put hours before it, whatever the time now)."""
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        issued = await clinician.post(
            f"/api/patients/{patient['id']}/join-links", json={"standing": True}
        )
        assert issued.status == 201, await issued.text()
        url = (await issued.json())["url"]
    async with server.app[ENGINE].connect() as conn:
        upcoming = await patient_sessions(conn, patient["id"], server.app[CLOCK].now())
    session = upcoming[1]
    await give_consents(server, patient["id"], session.session_id)
    phone = server.client()
    assert (await phone.get(url)).status == 200
    return phone, session


async def test_where_you_are_now_is_asked_only_within_the_window_before_the_session(
    windowed: RunningServer,
) -> None:
    server = windowed
    demo = await server.seed_demo()
    patient = _patient(demo, 1)  # a group member only: the next session is the group's
    phone, session = await _standing_phone(server, demo, patient)
    async with phone:
        clock = server.app[CLOCK]
        clock.advance(seconds=(session.starts_at - clock.now()).total_seconds() - 3 * 3600)
        early = await phone.get("/checkin")
        page = await early.text()
        assert early.status == 409
        assert "Check-in opens at" in page and "2 hours before the session" in page
        assert "Before we start" not in page
        token = CSRF.search(page)
        assert token is not None
        refused = await phone.post(
            "/checkin/safety",
            data={"csrf_token": token.group(1), **SAFETY, "zip": "92780"},
            allow_redirects=False,
        )
        assert refused.status == 409
        async with server.app[ENGINE].connect() as conn:
            assert (
                await checkin_safety.safety_check_for(conn, session.session_id, patient["id"])
                is None
            )
        clock.advance(hours=2)  # one hour before the session: the step is open
        page = await (await phone.get("/checkin")).text()
        assert "Before we start" in page
        status, _ = await _post(phone, "/checkin/safety", {**SAFETY, "zip": "92780"})
        assert status == 303


async def test_a_location_confirmed_before_the_window_is_asked_again(
    windowed: RunningServer,
) -> None:
    server = windowed
    demo = await server.seed_demo()
    patient = _patient(demo, 1)
    phone, session = await _standing_phone(server, demo, patient)
    async with phone:
        async with server.app[ENGINE].begin() as conn:
            # Where the patient was five hours before the session (as a standing link once
            # allowed days ahead), with the screening done: only the location is stale.
            await checkin_safety.save_safety_check(
                conn,
                server.keyring,
                session_id=session.session_id,
                patient_id=patient["id"],
                answers={**SAFETY, "zip": "92780", "private_space": True},
                now=session.starts_at - dt.timedelta(hours=5),
                recorded_by=None,
            )
        clock = server.app[CLOCK]
        clock.advance(seconds=(session.starts_at - clock.now()).total_seconds() - 3600)
        page = await (await phone.get("/checkin")).text()
        assert "Before we start" in page
        room = await phone.get("/room", allow_redirects=False)
        assert room.status == 303 and room.headers["Location"] == "/checkin"


# C-SSRS screens ------------------------------------------------------------------------


async def _screens(phone: aiohttp.ClientSession, answers: dict[str, str]) -> dict[str, str]:
    """Walk the check-in; the page each question (and the introduction) was asked on."""
    seen: dict[str, str] = {}
    for _ in range(60):
        response = await phone.get("/checkin", allow_redirects=False)
        if response.status == 303:
            return seen
        text = await response.text()
        token = CSRF.search(text)
        assert token is not None
        intro = re.search(r'name="introduced" value="([a-z0-9_]+)"', text)
        if intro is not None:
            seen["intro"] = text
            data = {"csrf_token": token.group(1), "introduced": intro.group(1)}
        else:
            qid = re.search(r'name="qid" value="([a-z0-9_]+)"', text)
            assert qid is not None, text[:400]
            seen[qid.group(1)] = text
            default = "no" if qid.group(1).startswith(("cssrs", "sud")) else "0"
            answer = answers.get(qid.group(1), default)
            data = {"csrf_token": token.group(1), "qid": qid.group(1), "answer": answer}
        posted = await phone.post("/checkin/answer", data=data, allow_redirects=False)
        if posted.status == 200:
            return seen
    raise AssertionError("the check-in never ended")


def _main(page: str) -> str:
    main = page.split('<main id="main" class="page">', 1)[1].split("</main>", 1)[0]
    main = main.split('<aside class="help-private', 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main)).replace("&#39;", "'")


async def test_each_suicide_question_carries_its_own_context_on_its_screen(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _ready(server, patient) as phone:
        status, _ = await _post(phone, "/checkin/safety", {**SAFETY, "zip": "92780"})
        assert status == 303
        seen = await _screens(
            phone,
            {"phq9_9": "1", "cssrs_q1": "yes", "cssrs_q2": "yes", "cssrs_q6": "yes"},
        )
    order = list(seen)
    # A short introduction comes before the first suicide question, and only once.
    assert order.index("intro") == order.index("cssrs_q1") - 1
    intro = _main(seen["intro"])
    assert "The next questions are about thoughts of suicide" in intro
    assert "Answer as best you can" in intro and "talk about this with your clinician" in intro
    screens = {qid: _main(page) for qid, page in seen.items() if qid.startswith("cssrs")}
    assert set(screens) == {f"cssrs_q{n}" for n in range(1, 7)} | {"cssrs_q6b"}
    for text in screens.values():
        assert "Questions about thoughts of suicide" in text
    # No screen leans on another one's words: the referent is spelled out on each.
    assert "how you might kill yourself" in screens["cssrs_q3"]
    assert "do this" not in screens["cssrs_q3"]
    assert "thoughts of killing yourself" in screens["cssrs_q4"]
    assert "these thoughts" not in screens["cssrs_q4"]
    assert "details of how to kill yourself" in screens["cssrs_q5"]
    for example in (
        "collected pills",
        "obtained a gun",
        "gave away valuables",
        "wrote a will or suicide note",
        "took out pills but didn't swallow any",
        "held a gun but changed your mind",
        "cut yourself",
        "tried to hang yourself",
    ):
        assert example in screens["cssrs_q6"], example
    assert "to end your life" in screens["cssrs_q6b"]
    assert "within the past 3 months" in screens["cssrs_q6b"]


# I need help, before the room ----------------------------------------------------------


async def _events(server: RunningServer, patient_id: str) -> list[Any]:
    async with server.app[ENGINE].connect() as conn:
        return list(
            await conn.execute(
                sa.select(crisis_events.c.id, crisis_events.c.trigger, crisis_events.c.level).where(
                    crisis_events.c.patient_id == patient_id
                )
            )
        )


async def _steps(server: RunningServer, event_id: str) -> list[str]:
    async with server.app[ENGINE].connect() as conn:
        found = await conn.execute(
            sa.select(crisis_steps.c.kind)
            .where(crisis_steps.c.event_id == event_id)
            .order_by(crisis_steps.c.step_no)
        )
        return list(found.scalars())


async def test_every_patient_page_before_the_room_carries_the_help_press(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _ready(server, patient) as phone:
        pages = {"join": await (await phone.get("/join")).text()}
        pages["safety"] = await (await phone.get("/checkin")).text()
        assert (await _post(phone, "/checkin/safety", {**SAFETY, "zip": "92780"}))[0] == 303
        pages["question"] = await (await phone.get("/checkin")).text()
    second = _patient(demo, 1)
    async with server.client() as fresh:
        assert (await fresh.get(second["join_url"])).status == 200
        pages["consent"] = await (await fresh.get("/consent")).text()
    for name, page in pages.items():
        assert 'action="/help"' in page, name
        assert "I need help (private)" in page and 'href="tel:911"' in page, name
        assert 'href="tel:988"' in page, name
        assert "help.js" in page, name


async def test_a_help_press_from_the_check_in_raises_one_high_event_once_stored(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _ready(server, patient) as phone:
        assert (await _post(phone, "/checkin/safety", {**SAFETY, "zip": "92780"}))[0] == 303
        status, page = await _post(phone, "/help", {"text": "Please call me", "back": "/checkin"})
        assert status == 200
        assert "Your clinician has been told" in page and 'href="/checkin"' in page
        assert 'href="tel:911"' in page and 'href="tel:988"' in page
        events = await _events(server, patient["id"])
        assert [(e.trigger, e.level) for e in events] == [("help_button", "high")]
        # A second press is the same incident: a step on the open event, not a new page.
        status, _ = await _post(phone, "/help", {"back": "/checkin"})
        assert status == 200
        assert len(await _events(server, patient["id"])) == 1
        steps = await _steps(server, events[0].id)
        assert steps[0] == "raised" and steps[-1] == "concern_added"
        assert steps.count("raised") == 1 and steps.count("concern_added") == 1
        # The page it was pressed on is still there, where the patient left it.
        assert "Question 1 of" in await (await phone.get("/checkin")).text()


async def test_help_presses_are_rate_limited_into_the_open_event_and_resends_are_one_press(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _ready(server, patient) as phone:
        reply = await phone.post(
            "/help",
            data={"csrf_token": await _token(phone, "/join"), "press_id": "press-1"},
            headers={"Accept": "application/json"},
        )
        assert reply.status == 200
        body = await reply.json()
        assert body["type"] == "help_received" and body["press_id"] == "press-1"
        (event,) = await _events(server, patient["id"])
        after_first = await _steps(server, event.id)
        # The same press sent again (its answer was lost) is not a second press.
        again = await phone.post(
            "/help",
            data={"csrf_token": await _token(phone, "/join"), "press_id": "press-1"},
            headers={"Accept": "application/json"},
        )
        assert again.status == 200 and (await again.json())["press_id"] == "press-1"
        assert await _steps(server, event.id) == after_first
        # Three presses a minute reach the event; more fold into it without new steps.
        for _ in range(5):
            status, page = await _post(phone, "/help", {})
            assert status == 200 and "Your clinician has been told" in page
        assert (await _steps(server, event.id)).count("concern_added") == 2
        assert len(await _events(server, patient["id"])) == 1
        async with server.app[ENGINE].connect() as conn:
            outcomes = await conn.execute(
                sa.select(audit_log.c.outcome, audit_log.c.detail).where(
                    audit_log.c.action == "patient.help_pressed"
                )
            )
            recorded = [(row.outcome, row.detail["press_id"]) for row in outcomes]
        # Every press is on the audit record once (the resend is not a press), folded or not.
        assert recorded == [("ok", "press-1"), ("ok", None), ("ok", None)] + [("folded", None)] * 3
        server.app[CLOCK].advance(minutes=1)
        assert (await _post(phone, "/help", {}))[0] == 200
        assert (await _steps(server, event.id)).count("concern_added") == 3


async def test_a_help_press_needs_the_patients_own_link_session_and_a_form_token(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with server.client() as stranger:
        page = await (await stranger.get("/signin")).text()
        token = CSRF.search(page)
        assert token is not None
        refused = await stranger.post("/help", data={"csrf_token": token.group(1)})
        text = await refused.text()
        assert refused.status == 401
        assert "We could not tell your clinician" in text and 'href="tel:988"' in text
    async with await _ready(server, patient) as phone:
        forged = await phone.post("/help", data={"csrf_token": "not-the-token"})
        assert forged.status == 400
        too_long = await _post(phone, "/help", {"text": "x" * 281})
        assert too_long[0] == 400
        bad_id = await _post(phone, "/help", {"press_id": "../../etc"})
        assert bad_id[0] == 400
    assert await _events(server, patient["id"]) == []


async def test_before_the_link_is_confirmed_the_control_gives_the_numbers_and_pages_nobody(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.app[ENGINE].begin() as conn:
        await conn.execute(programs.update().values(join_requires_dob=True))
    patient = _patient(demo)
    async with server.client() as phone:
        page = await (await phone.get(patient["join_url"])).text()
        assert "Confirm it is you" in page
        assert "I need help (private)" in page
        assert 'href="tel:911"' in page and 'href="tel:988"' in page
        assert 'href="tel:(555) 010-0100"' in page  # the program's phone
        # Nobody is signed in through the link yet: no form that would pretend to page.
        assert 'action="/help"' not in page
    assert await _events(server, patient["id"]) == []


async def test_a_clinician_on_the_phone_records_where_the_patient_is_only_within_the_window(
    windowed: RunningServer,
) -> None:
    server = windowed
    demo = await server.seed_demo()
    patient = _patient(demo, 1)
    async with server.app[ENGINE].connect() as conn:
        upcoming = await patient_sessions(conn, patient["id"], server.app[CLOCK].now())
    session = upcoming[1]
    clock = server.app[CLOCK]
    clock.advance(seconds=(session.starts_at - clock.now()).total_seconds() - 3 * 3600)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        token = CSRF.search(await (await clinician.get(f"/patients/{patient['id']}")).text())
        assert token is not None
        form = {
            "csrf_token": token.group(1),
            "session_id": session.session_id,
            **SAFETY,
            "zip": "92780",
        }
        path = f"/patients/{patient['id']}/safety-check"
        early = await clinician.post(path, data=form, allow_redirects=False)
        assert early.status == 409
        assert "120 minutes before the session" in await early.text()
        clock.advance(hours=2)
        assert (await clinician.post(path, data=form, allow_redirects=False)).status == 303
