"""The daily mood check on a real server: the patient's page, the review task a very low
day raises, the trends and the "since last session" line staff see, and the reminder."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import aiohttp
import sqlalchemy as sa

from care.mood import MoodEntry
from crisis.notify import SIGNATURE_HEADER, signature_matches
from rooms.schedule import zone
from server.accounts.joinlinks import patient_sessions
from server.appkeys import CLOCK, CRISIS_STREAM, ENGINE
from server.checkin import store as checkin_store
from server.mood import reminders
from server.mood import store as mood_store
from server.storage.engine import create_engine
from server.storage.tables import (
    audit_log,
    crisis_requests,
    join_links,
    mood_entries,
    mood_reminders,
    notification_outbox,
    programs,
)
from tests.conftest import (
    CSRF,
    RunningServer,
    give_checkin,
    give_consents,
    signed_in,
    staff_login,
)
from tests.integration.test_crisis import SECRET, Receiver, _count, until

CALM = {"mood": "6", "anxiety": "3", "sleep_hours": "7.5", "note": "walked by the river"}


def _patient(demo: dict[str, Any], index: int = 0) -> dict[str, str]:
    return demo["groups"][0]["patients"][index]


async def _phone(server: RunningServer, patient: dict[str, str]) -> aiohttp.ClientSession:
    phone = server.client()
    assert (await phone.get(patient["join_url"])).status == 200
    return phone


async def _submit(phone: aiohttp.ClientSession, form: dict[str, str]) -> tuple[int, str]:
    page = await (await phone.get("/mood")).text()
    token = CSRF.search(page)
    assert token is not None, page[:300]
    response = await phone.post("/mood", data={"csrf_token": token.group(1), **form})
    return response.status, await response.text()


async def _reviews(server: RunningServer, patient_id: str) -> list[Any]:
    async with server.app[ENGINE].connect() as conn:
        return list(
            await conn.execute(
                sa.select(crisis_requests).where(
                    crisis_requests.c.patient_id == patient_id,
                    crisis_requests.c.closed_at.is_(None),
                )
            )
        )


async def test_a_patient_checks_in_once_a_day_and_a_second_check_replaces_the_first(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _phone(server, patient) as phone:
        home = await (await phone.get("/join")).text()
        assert '<ul class="patient-links">' in home and 'href="/mood"' in home
        page = await (await phone.get("/mood")).text()
        assert 'href="tel:988"' in page and 'action="/help"' in page
        assert 'name="back" value="/mood"' in page  # the help press returns here
        assert 'name="urges"' not in page  # a mental-health program asks no urges
        assert "You already checked in today" not in page

        status, page = await _submit(phone, {"mood": "12", "anxiety": "", "sleep_hours": "x"})
        assert status == 400
        for field in ("mood", "anxiety", "sleep_hours"):
            assert f'id="e-{field}"' in page
        assert 'href="tel:988"' in page

        status, page = await _submit(phone, CALM)
        assert status == 200 and "Thank you for checking in today" in page
        assert 'href="tel:988"' in page

        page = await (await phone.get("/mood")).text()
        assert "You already checked in today" in page and 'name="replace" value="yes"' in page
        assert 'value="6" checked' in page and "walked by the river" in page

        # Another tab, still showing a blank form, sends without confirming: asked first.
        status, page = await _submit(phone, {**CALM, "mood": "4"})
        assert status == 409 and "Update today's check-in with these answers?" in page
        async with server.app[ENGINE].connect() as conn:
            today = (await mood_store.patient_program(conn, patient["id"])).today(
                server.app[CLOCK].now()
            )
            stored = await mood_store.entry_on(conn, server.keyring, patient["id"], today)
        assert stored is not None and stored.entry.mood == 6

        status, page = await _submit(phone, {**CALM, "mood": "4", "replace": "yes"})
        assert status == 200 and "Today's check-in is updated" in page
    async with server.app[ENGINE].connect() as conn:
        rows = list(
            await conn.execute(
                sa.select(mood_entries).where(mood_entries.c.patient_id == patient["id"])
            )
        )
        stored = await mood_store.entry_on(conn, server.keyring, patient["id"], today)
        audited = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(audit_log)
            .where(audit_log.c.action == "patient.mood_check")
        )
    todays = [row for row in rows if row.day == today]
    assert len(todays) == 1
    assert "river" not in todays[0].entry_enc and todays[0].entry_enc.startswith("v1:")
    assert stored is not None and stored.entry.mood == 4
    assert audited == 2
    assert await _reviews(server, patient["id"]) == []


async def test_only_a_patient_with_an_opened_link_reaches_the_check(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.client() as stranger:
        response = await stranger.get("/mood", allow_redirects=False)
        assert response.status == 401
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        assert (await clinician.get("/mood", allow_redirects=False)).status == 401


async def test_a_very_low_mood_raises_one_review_task_and_a_staff_badge(
    any_server: RunningServer,
) -> None:
    server = any_server  # SQLite and PostgreSQL
    demo = await server.seed_demo()
    patient = _patient(demo)
    async with await _phone(server, patient) as phone:
        status, page = await _submit(phone, {**CALM, "mood": "2"})
        assert status == 200 and "Your care team will look at today's check-in" in page
        (task,) = await _reviews(server, patient["id"])
        assert task.kind == "review_task" and task.level == "low"
        assert task.trigger == "mood_check" and task.session_id == patient["join_session_id"]
        # A second low check the same day updates the day, not the number of tasks.
        status, _ = await _submit(phone, {**CALM, "mood": "1", "replace": "yes"})
        assert status == 200
        assert len(await _reviews(server, patient["id"])) == 1
    async with server.app[ENGINE].connect() as conn:
        status_for_staff = await checkin_store.staff_status(
            conn, server.keyring, patient["join_session_id"], patient["id"]
        )
    assert {"kind": "review_task", "level": "low"} in status_for_staff["escalations"]


async def test_substance_use_programs_ask_urges_and_a_strong_urge_asks_for_a_review(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.app[ENGINE].begin() as conn:
        await conn.execute(programs.update().values(kind="substance_use"))
    patient = _patient(demo, 1)
    async with await _phone(server, patient) as phone:
        assert 'name="urges"' in await (await phone.get("/mood")).text()
        status, page = await _submit(phone, CALM)
        assert status == 400 and 'id="e-urges"' in page
        status, _ = await _submit(phone, {**CALM, "urges": "9"})
        assert status == 200
    (task,) = await _reviews(server, patient["id"])
    assert task.trigger == "mood_check"


async def test_staff_see_the_trends_on_the_audited_history_page(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        response = await clinician.get(f"/patients/{patient['id']}/measures")
        page = await response.text()
    assert response.status == 200
    assert 'aria-label="Daily mood, anxiety over time"' in page
    assert 'aria-label="Hours of sleep over time"' in page
    assert "PHQ-9 and GAD-7 over time" in page
    async with server.app[ENGINE].connect() as conn:
        reads = [
            row.detail
            for row in await conn.execute(
                sa.select(audit_log.c.detail).where(
                    audit_log.c.action == "patient.phi_read",
                    audit_log.c.target_id == patient["id"],
                )
            )
        ]
    assert {"fields": "mood_checks"} in reads


async def test_the_since_last_session_line_reaches_staff_and_never_the_patient(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo, 1)  # a group member only: the group's session is their first
    room_id = patient["join_session_id"]
    await give_consents(server, patient["id"], room_id)
    await give_checkin(server, patient["id"], room_id)
    async with await _phone(server, patient) as phone:
        await _submit(phone, {**CALM, "mood": "2"})
        async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
            host = await clinician.ws_connect(f"/ws/rooms/{room_id}")
            await host.send_json({"type": "hello", "protocol": 1})
            ws = await phone.ws_connect(f"/ws/rooms/{room_id}")
            await ws.send_json({"type": "hello", "protocol": 1})
            own = await ws.receive_json()
            while True:
                message = await host.receive_json()
                if message["type"] == "member" and message["member"]["presence"] == "waiting":
                    break
            await ws.close()
            await host.close()
    assert "staff_info" not in own["you"] and "daily check-in" not in json.dumps(own)
    mood = message["member"]["staff_info"]["mood"]
    assert mood["count"] >= 1 and mood["reviews"] == 1
    # The demo group's first session: no earlier one, so the last week is summed up.
    assert mood["first_session"] is True and "(no earlier session)" in mood["text"]
    assert "1 review flag" in mood["text"] and "lowest mood 2" in mood["text"]
    assert "river" not in json.dumps(message)  # numbers only: notes stay on the history page


async def test_the_demo_has_two_weeks_of_varied_checks_and_no_review_tasks(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.app[ENGINE].connect() as conn:
        for patient in demo["groups"][0]["patients"]:
            found = await mood_store.entries(conn, server.keyring, patient["id"])
            assert 8 <= len(found) <= 14
            assert len({e.mood for e in found}) > 1
            assert all(e.mood >= 3 for e in found)
        assert (await conn.scalar(sa.select(sa.func.count()).select_from(crisis_requests))) == 0


# The reminder --------------------------------------------------------------------------------


async def _set_reminder(
    admin: aiohttp.ClientSession, demo: dict[str, Any], form: dict[str, str]
) -> tuple[int, str]:
    path = f"/admin/programs/{demo['program']['id']}/mood"
    page = await (await admin.get(path)).text()
    token = CSRF.search(page)
    assert token is not None
    response = await admin.post(path, data={"csrf_token": token.group(1), **form})
    return response.status, await response.text()


async def test_the_reminder_is_queued_once_a_day_without_phi_and_survives_a_restart(
    any_server: RunningServer,
) -> None:
    server = any_server  # SQLite and PostgreSQL
    demo = await server.seed_demo()
    clock = server.app[CLOCK]
    local = zone("America/Los_Angeles")
    now_local = clock.now().astimezone(local)
    # Move to 10:00 tomorrow, program time, so the day cannot roll over mid-test.
    ten = dt.datetime.combine(now_local.date() + dt.timedelta(days=1), dt.time(10), local)
    clock.advance(seconds=(ten - clock.now()).total_seconds())
    receiver = Receiver()
    await receiver.start()

    admin = await signed_in(server, *staff_login(demo, "admin"))
    try:
        on = {"enabled": "on", "reminder_time": "25:00"}
        status, page = await _set_reminder(admin, demo, on)
        assert status == 400 and 'id="e-reminder_time"' in page
        status, page = await _set_reminder(admin, demo, {**on, "reminder_time": "11:00"})
        assert status == 200 and 'value="11:00"' in page
        program = await (await admin.get(f"/admin/programs/{demo['program']['id']}")).text()
        assert f'href="/admin/programs/{demo["program"]["id"]}/mood"' in program
        response = await admin.put(
            f"/api/crisis/settings/{demo['program']['id']}",
            json={"webhook_url": receiver.url, "webhook_secret": SECRET},
        )
        assert response.status == 200
    finally:
        await admin.close()

    reminded, checked, revoked = (p["id"] for p in demo["groups"][0]["patients"][:3])
    day = ten.date()
    async with server.app[ENGINE].begin() as conn:
        # Standing links that stay active all day; one patient's link is revoked.
        await conn.execute(
            join_links.update().values(expires_at=ten + dt.timedelta(days=30), revoked_at=None)
        )
        await conn.execute(
            join_links.update().where(join_links.c.patient_id == revoked).values(revoked_at=ten)
        )
        await mood_store.save_entry(
            conn, server.keyring, checked, MoodEntry(day, 6, 3, 7.0), clock.now()
        )
    public_url = server.settings.public_url
    engine = server.app[ENGINE]
    dashboards = server.app[CRISIS_STREAM].subscribe()
    try:
        assert await reminders.queue_due_reminders(engine, clock, public_url) == 0  # 10:00
        clock.advance(hours=1, minutes=1)
        queued = await reminders.queue_due_reminders(engine, clock, public_url)
        assert await reminders.queue_due_reminders(engine, clock, public_url) == 0
        # A restart reads the once-a-day markers from the database: nothing is queued again.
        fresh = create_engine(server.settings.database_url)
        try:
            assert await reminders.queue_due_reminders(fresh, clock, public_url) == 0
        finally:
            await fresh.dispose()
        # The outbox worker delivers them to the program's webhook, like any notification.
        await until(lambda: _count(receiver, queued))
        assert dashboards._queue.empty()  # reminders never reach the supervisors' screens
    finally:
        dashboards.close()
        await receiver.stop()
    async with engine.connect() as conn:
        rows = list(
            await conn.execute(
                sa.select(notification_outbox).where(notification_outbox.c.event_id.is_(None))
            )
        )
        markers = (await conn.execute(sa.select(mood_reminders))).all()
    assert queued == len(rows) == len(markers) == 6  # eight patients, less two
    patients_reminded = {row.body["patient_id"] for row in rows}
    assert reminded in patients_reminded
    assert checked not in patients_reminded and revoked not in patients_reminded
    sent = [json.loads(body) for body, _ in receiver.received]
    assert len(sent) == 6 and {s["patient_id"] for s in sent} == patients_reminded
    for body, headers in receiver.received:
        assert signature_matches(body, SECRET.encode(), headers[SIGNATURE_HEADER])
    for s in sent:
        assert s["kind"] == "mood_reminder" and s["day"] == day.isoformat()
        assert s["url"] == f"{public_url}/mood"
        assert set(s) == {"id", "kind", "program_id", "patient_id", "day", "at", "url"}
    text = json.dumps(sent)
    for phi in ("Avery", "Blake", "Example", "010-01", "Sacramento", "river"):
        assert phi not in text


async def test_the_summary_for_a_later_session_starts_after_the_one_before(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo, 2)
    now = server.app[CLOCK].now()
    async with server.app[ENGINE].connect() as conn:
        first, second = (await patient_sessions(conn, patient["id"], now))[:2]
        summary = await mood_store.since_last_session(
            conn, server.keyring, patient["id"], second.session_id, now
        )
        everything = await mood_store.entries(conn, server.keyring, patient["id"])
    first_day = first.starts_at.astimezone(zone("America/Los_Angeles")).date()
    assert summary.since == first_day and summary.first_session is False
    assert summary.count == sum(1 for e in everything if e.day > first_day)
    assert summary.text().startswith(f"Since last session ({first_day:%a %b} {first_day.day})")
