"""Homework between sessions over HTTP and the room socket: a patient's drafts and hand-in,
a clinician's assignment and audited review, the group's assignment, and the room badge."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import sqlalchemy as sa
from structlog.testing import capture_logs

from server.appkeys import ENGINE
from server.homework import store as homework
from server.storage.tables import audit_log, homework_assignments, programs
from tests.conftest import CSRF, RunningServer, consent_group, signed_in, staff_login

THOUGHT = {
    "situation": "Waiting for a reply that did not come",
    "thought": "Nobody wants to hear from me",
    "emotion": "Sad",
    "intensity_before": "80",
    "balanced": "She is probably busy",
}


def _patient(demo: dict[str, Any], index: int) -> dict[str, str]:
    return demo["groups"][0]["patients"][index]


async def _phone(server: RunningServer, patient: dict[str, str]) -> aiohttp.ClientSession:
    phone = server.client()
    assert (await phone.get(patient["join_url"])).status == 200
    return phone


async def _token(client: aiohttp.ClientSession, path: str) -> str:
    found = CSRF.search(await (await client.get(path)).text())
    assert found is not None, path
    return found.group(1)


async def _assignments(server: RunningServer, patient_id: str) -> list[homework.Assignment]:
    async with server.app[ENGINE].connect() as conn:
        return await homework.of_patient(conn, patient_id)


async def test_a_patient_saves_a_draft_fixes_mistakes_and_hands_in_once(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo, 2)
    phone = await _phone(server, patient)
    joined = await (await phone.get("/join")).text()
    assert 'href="/homework"' in joined
    listing = await (await phone.get("/homework")).text()
    assert "Thought record" in listing and "To do" in listing
    (mine,) = await _assignments(server, patient["id"])
    path = f"/homework/{mine.id}"
    token = await _token(phone, path)

    draft = await phone.post(
        path,
        data={"csrf_token": token, "action": "draft", "situation": "On the bus"},
        allow_redirects=False,
    )
    assert draft.status == 303
    page = await (await phone.get(draft.headers["Location"])).text()
    assert "Draft saved" in page and "On the bus" in page
    async with server.app[ENGINE].connect() as conn:
        raw = await conn.scalar(
            sa.select(homework_assignments.c.answers_enc).where(
                homework_assignments.c.id == mine.id
            )
        )
    assert raw is not None and "On the bus" not in raw  # sealed at rest

    short = await phone.post(
        path, data={"csrf_token": token, "action": "hand_in", "situation": "On the bus"}
    )
    assert short.status == 400
    text = await short.text()
    assert "Answer this before you hand it in" in text and "On the bus" in text
    wrong = await phone.post(
        path, data={"csrf_token": token, "action": "hand_in", **THOUGHT, "intensity_before": "150"}
    )
    assert wrong.status == 400
    assert "Choose a whole number from 0 to 100" in await wrong.text()
    unknown = await phone.post(path, data={"csrf_token": token, "action": "hand_in", "x": "1"})
    assert unknown.status == 400
    bad_action = await phone.post(path, data={"csrf_token": token, "action": "delete"})
    assert bad_action.status == 400
    no_csrf = await phone.post(path, data={"action": "draft", "situation": "x"})
    assert no_csrf.status == 400

    with capture_logs() as logs:
        done = await phone.post(
            path, data={"csrf_token": token, "action": "hand_in", **THOUGHT}, allow_redirects=False
        )
    assert done.status == 303
    assert "homework.handed_in" in [entry["event"] for entry in logs]
    assert "probably busy" not in repr(logs)  # ids in logs, never answers
    page = await (await phone.get(path)).text()
    assert "Handed in" in page and "She is probably busy" in page
    assert 'name="action"' not in page  # read-only after hand-in
    again = await phone.post(path, data={"csrf_token": token, "action": "draft", **THOUGHT})
    assert again.status == 409
    async with server.app[ENGINE].connect() as conn:
        actions = (
            await conn.scalars(
                sa.select(audit_log.c.action).where(
                    audit_log.c.target_type == "homework", audit_log.c.target_id == mine.id
                )
            )
        ).all()
    assert "homework.draft_saved" in actions and "homework.handed_in" in actions
    await phone.close()


async def test_a_patient_cannot_open_another_patients_homework_or_any_without_a_link(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    (avery,) = await _assignments(server, _patient(demo, 0)["id"])
    phone = await _phone(server, _patient(demo, 2))
    assert (await phone.get(f"/homework/{avery.id}")).status == 404
    token = await _token(phone, "/homework")
    posted = await phone.post(
        f"/homework/{avery.id}", data={"csrf_token": token, "action": "draft"}
    )
    assert posted.status == 404
    await phone.close()
    async with server.client() as stranger:
        assert (await stranger.get("/homework")).status == 401


async def test_a_clinician_assigns_reviews_with_an_audited_read_and_marks_it_reviewed(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    avery = _patient(demo, 0)
    blake = _patient(demo, 1)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        record = await (await clinician.get(f"/patients/{blake['id']}")).text()
        assert "Assign homework" in record and "draft saved" in record
        assert "Urge log" not in record  # a mental-health program: no urge log
        due = re.search(r'name="due_session_id"><option value="([^"]+)"', record)
        assert due is not None
        token = await _token(clinician, f"/patients/{blake['id']}")
        base = {"csrf_token": token, "due_session_id": due.group(1)}
        path = f"/patients/{blake['id']}/homework"
        empty = await clinician.post(path, data={**base, "worksheet": "free_text"})
        assert empty.status == 400 and "write the task" in await empty.text()
        urge = await clinician.post(path, data={**base, "worksheet": "urge_log"})
        assert urge.status == 400
        elsewhen = await clinician.post(
            path, data={**base, "worksheet": "diary_card", "due_session_id": "nope"}
        )
        assert elsewhen.status == 400
        made = await clinician.post(
            path,
            data={**base, "worksheet": "free_text", "instructions": "Call your sponsor twice"},
            allow_redirects=False,
        )
        assert made.status == 303
        free = [
            a for a in await _assignments(server, blake["id"]) if a.worksheet.key == "free_text"
        ]
        assert len(free) == 1 and free[0].instructions(server.keyring) == "Call your sponsor twice"
        async with server.app[ENGINE].connect() as conn:
            raw = await conn.scalar(
                sa.select(homework_assignments.c.instructions_enc).where(
                    homework_assignments.c.id == free[0].id
                )
            )
        assert "sponsor" not in raw

        (handed,) = await _assignments(server, avery["id"])
        review = f"/patients/{avery['id']}/homework/{handed.id}"
        page = await clinician.get(review)
        assert page.status == 200
        text = await page.text()
        assert "She is probably busy" in text and "Reviewed" in text
        async with server.app[ENGINE].connect() as conn:
            reads = (
                await conn.execute(
                    sa.select(audit_log.c.detail).where(
                        audit_log.c.action == "patient.phi_read",
                        audit_log.c.target_id == avery["id"],
                    )
                )
            ).all()
        assert any((r.detail or {}).get("fields") == "homework" for r in reads)
        # The answers are never reached through another patient's record.
        wrong = await clinician.get(f"/patients/{blake['id']}/homework/{handed.id}")
        assert wrong.status == 404
        marked = await clinician.post(
            review + "/reviewed", data={"csrf_token": token}, allow_redirects=False
        )
        assert marked.status == 303
        assert "reviewed" in await (await clinician.get(review)).text()
        not_yet = await clinician.post(
            f"/patients/{blake['id']}/homework/{free[0].id}/reviewed", data={"csrf_token": token}
        )
        assert not_yet.status == 409


async def test_a_group_assignment_reaches_every_member_and_the_group_page_counts_it(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    group = demo["groups"][0]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/groups/{group['id']}")).text()
        assert "1 of 8 handed in" in page  # the demo's thought record
        due = re.search(r'name="due_session_id"><option value="([^"]+)"', page)
        assert due is not None
        token = await _token(clinician, f"/groups/{group['id']}")
        made = await clinician.post(
            f"/groups/{group['id']}/homework",
            data={"csrf_token": token, "worksheet": "diary_card", "due_session_id": due.group(1)},
            allow_redirects=False,
        )
        assert made.status == 303
        page = await (await clinician.get(f"/groups/{group['id']}")).text()
        assert "DBT diary card" in page and "0 of 8 handed in" in page
    for patient in group["patients"]:
        sheets = {a.worksheet.key for a in await _assignments(server, patient["id"])}
        assert sheets == {"thought_record", "diary_card"}
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        page = await (await supervisor.get(f"/groups/{group['id']}")).text()
        assert "Assign homework" not in page


async def test_a_substance_use_program_offers_the_urge_log(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.app[ENGINE].begin() as conn:
        await conn.execute(programs.update().values(kind="substance_use"))
    blake = _patient(demo, 1)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        record = await (await clinician.get(f"/patients/{blake['id']}")).text()
        assert "Urge log" in record
        due = re.search(r'name="due_session_id"><option value="([^"]+)"', record)
        assert due is not None
        token = await _token(clinician, f"/patients/{blake['id']}")
        made = await clinician.post(
            f"/patients/{blake['id']}/homework",
            data={"csrf_token": token, "worksheet": "urge_log", "due_session_id": due.group(1)},
            allow_redirects=False,
        )
        assert made.status == 303


async def test_staff_in_the_room_see_homework_counts_and_patients_do_not(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await consent_group(server, demo)
    (cameron,) = await _assignments(server, _patient(demo, 2)["id"])
    async with server.app[ENGINE].begin() as conn:
        answers = {**THOUGHT, "intensity_before": 80}
        await homework.save(
            conn, server.keyring, cameron, answers, hand_in=True, now=cameron.due_at
        )
    seen: dict[str, Any] = {}
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        for index in (1, 2):
            patient = _patient(demo, index)
            room = patient["join_session_id"]
            phone = await _phone(server, patient)
            host = await clinician.ws_connect(f"/ws/rooms/{room}")
            await host.send_json({"type": "hello", "protocol": 1})
            ws = await phone.ws_connect(f"/ws/rooms/{room}")
            await ws.send_json({"type": "hello", "protocol": 1})
            while True:
                message = await host.receive_json()
                if message["type"] == "member" and message["member"]["presence"] == "waiting":
                    break
            while True:
                own = await ws.receive_json()
                if own["type"] == "snapshot":
                    break
            assert "staff_info" not in own["you"]
            seen[patient["id"]] = message["member"]["staff_info"]["homework"]
            await ws.close()
            await host.close()
            await phone.close()
    assert seen[_patient(demo, 1)["id"]] == {"due": 1, "handed_in": 0}
    assert seen[_patient(demo, 2)["id"]] == {"due": 1, "handed_in": 1}
