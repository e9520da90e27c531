"""The technology check over HTTP and its WebSocket: the page from /join, the echo through
the real SFU with aiortc peers, the kept result (validated, rate-limited, no PHI), the
staff badge, and the clinician's 10-minute technology test session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import sqlalchemy as sa

from server.appkeys import ENGINE
from server.storage.tables import appointments, audit_log, sessions, tech_checks
from server.techcheck.echo import ECHOES
from tests.conftest import CSRF, RunningServer, signed_in, staff_login
from tests.media.peer import ClientPeer

RESULT = {
    "step_browser": "pass",
    "step_camera": "pass",
    "step_microphone": "pass",
    "step_speaker": "problem",
    "rtt_ms": "38",
    "loss_pct": "0",
    "kbps": "420",
    "browser": "safari",
}
JSON = {"Accept": "application/json"}


async def _patient_phone(server: RunningServer, patient: dict[str, str]) -> aiohttp.ClientSession:
    phone = server.client()
    assert (await phone.get(patient["join_url"])).status == 200
    return phone


async def _token(phone: aiohttp.ClientSession) -> str:
    page = await (await phone.get("/techcheck")).text()
    found = CSRF.search(page)
    assert found is not None, page[:300]
    return found.group(1)


async def test_patient_opens_the_check_from_join_without_a_session_in_view(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = demo["groups"][0]["patients"][0]
    async with await _patient_phone(server, patient) as phone:
        join = await (await phone.get("/join")).text()
        assert '<ul class="patient-links">' in join and 'href="/techcheck"' in join
        response = await phone.get("/techcheck")
        page = await response.text()
        assert response.status == 200
        assert "Start the check" in page and "/static/techcheck.js" in page
        assert 'data-relay="false"' in page  # no TURN server configured here
        assert "I need help" in page  # the private help control, as on every patient page
    async with server.client() as stranger:
        assert (await stranger.get("/techcheck")).status == 401
        refused = await stranger.post("/techcheck/result", data=RESULT | {"csrf_token": "x"})
        assert refused.status == 400  # no form token of this browser's


async def test_result_is_validated_kept_without_phi_and_shown_to_staff(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    group = demo["groups"][0]
    patient = group["patients"][0]
    async with await _patient_phone(server, patient) as phone:
        token = await _token(phone)
        bad = await phone.post(
            "/techcheck/result",
            data=RESULT | {"csrf_token": token, "rtt_ms": "soon"},
            headers=JSON,
        )
        assert bad.status == 400
        assert (await bad.json())[
            "error"
        ] == "The check could not be saved: rtt_ms must be a number."
        extra = await phone.post(
            "/techcheck/result",
            data=RESULT | {"csrf_token": token, "camera_label": "Front camera"},
            headers=JSON,
        )
        assert extra.status == 400 and "Front camera" not in await extra.text()
        no_csrf = await phone.post("/techcheck/result", data=RESULT, headers=JSON)
        assert no_csrf.status == 400
        saved = await phone.post(
            "/techcheck/result", data=RESULT | {"csrf_token": token}, headers=JSON
        )
        assert saved.status == 200, await saved.text()
        body = await saved.json()
        assert body["passed"] is False and body["problems"] == ["speaker"]
        assert body["steps"]["relay"] == "skipped" and body["steps"]["connection"] == "pass"
        page = await (await phone.get("/techcheck")).text()
        assert "some things needed attention" in page
    async with server.app[ENGINE].connect() as conn:
        rows = (
            (
                await conn.execute(
                    sa.select(tech_checks).where(tech_checks.c.patient_id == patient["id"])
                )
            )
            .mappings()
            .all()
        )
        audited = (
            await conn.execute(
                sa.select(audit_log.c.outcome, audit_log.c.detail).where(
                    audit_log.c.action == "patient.tech_check"
                )
            )
        ).all()
    assert len(rows) == 1
    row = rows[0]
    assert row["patient_id"] == patient["id"] and row["browser"] == "safari"
    assert (row["rtt_ms"], row["loss_pct"], row["kbps"]) == (38, 0.0, 420)
    assert audited == [("problems", {"problems": ["speaker"]})]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        group_page = await (await clinician.get(f"/groups/{group['id']}")).text()
        assert "Tech check: problems (speaker)" in group_page
        assert "No tech check yet" in group_page  # members who have not run it
        assert "Tech check passed" in group_page  # the demo's earlier checks
        assert "Tech check: problems (connection)" in group_page
        record = await (await clinician.get(f"/patients/{patient['id']}")).text()
        assert "Tech check: problems (speaker)" in record
        assert "round trip 38 ms" in record and "420 kbit/s" in record


async def test_results_are_rate_limited_per_patient(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = demo["groups"][0]["patients"][1]
    async with await _patient_phone(server, patient) as phone:
        token = await _token(phone)
        statuses = []
        for _ in range(11):
            response = await phone.post(
                "/techcheck/result", data=RESULT | {"csrf_token": token}, headers=JSON
            )
            statuses.append(response.status)
        assert statuses == [200] * 10 + [429]
        assert "try again in an hour" in (await response.json())["error"]


async def test_echo_returns_the_patients_own_media_through_the_sfu(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = demo["groups"][0]["patients"][0]
    sender, receiver = ClientPeer("send"), ClientPeer("recv", audio=False, video=False)
    async with await _patient_phone(server, patient) as phone:
        ws = await phone.ws_connect("/ws/techcheck")
        ready = await ws.receive_json(timeout=10)
        assert ready["type"] == "ready" and ready["ice_servers"] == []
        try:
            while True:
                offer = await ws.receive_json(timeout=10)
                assert offer["type"] == "offer", offer
                if offer["leg"] == "send":
                    # A bad message is answered with a reason; the test goes on.
                    await ws.send_str("not json")
                    assert (await ws.receive_json(timeout=10))["code"] == "bad_json"
                peer = sender if offer["leg"] == "send" else receiver
                sdp = await peer.on_offer(offer)
                await ws.send_json({"type": "answer", "leg": offer["leg"], "sdp": sdp})
                if offer["leg"] == "recv":
                    break
            # The receiving connection gets the patient's own tracks, as a group member would.
            assert {(t["member_id"], t["source"]) for t in offer["tracks"].values()} == {
                ("send", "video"),
                ("send", "audio"),
            }
            for _ in range(200):
                if receiver.frames[("send", "video")] >= 5 and receiver.frames[("send", "audio")]:
                    break
                await asyncio.sleep(0.05)
            assert receiver.frames[("send", "video")] >= 5, receiver.frames
            assert patient["id"] in server.app[ECHOES]
            await ws.send_json({"type": "bye"})
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        finally:
            await ws.close()
            await sender.close()
            await receiver.close()
    for _ in range(100):
        if not server.app[ECHOES]:
            break
        await asyncio.sleep(0.05)
    assert not server.app[ECHOES]


async def test_echo_socket_refuses_strangers_and_bad_messages(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with server.client() as stranger:
        try:
            await stranger.ws_connect("/ws/techcheck")
            raise AssertionError("a stranger opened the echo test")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
    patient = demo["groups"][0]["patients"][0]
    async with await _patient_phone(server, patient) as phone:
        ws = await phone.ws_connect("/ws/techcheck")
        assert (await ws.receive_json(timeout=10))["type"] == "ready"
        assert (await ws.receive_json(timeout=10))["leg"] == "send"
        for message in (
            {"type": "answer", "leg": "sideways", "sdp": "v=0"},
            {"type": "shout"},
            {"type": "answer", "leg": "recv", "sdp": "v=0"},
        ):
            await ws.send_str(json.dumps(message))
        codes = [(await ws.receive_json(timeout=10))["code"] for _ in range(3)]
        assert codes == ["bad_message", "unknown_type", "unexpected"]
        closing = await ws.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4400


async def test_clinician_schedules_a_ten_minute_technology_test(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = demo["groups"][0]["patients"][0]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        record = await (await clinician.get(f"/patients/{patient['id']}")).text()
        token = CSRF.search(record)
        assert token is not None and "Schedule technology test" in record
        bad = await clinician.post(
            f"/patients/{patient['id']}/tech-test",
            data={"csrf_token": token.group(1), "starts_at": "tomorrow"},
            allow_redirects=False,
        )
        assert bad.status == 400
        past = await clinician.post(
            f"/patients/{patient['id']}/tech-test",
            data={"csrf_token": token.group(1), "starts_at": "2020-01-01T10:00"},
            allow_redirects=False,
        )
        assert past.status == 400
        made = await clinician.post(
            f"/patients/{patient['id']}/tech-test",
            data={"csrf_token": token.group(1), "starts_at": "2099-03-02T17:30"},
            allow_redirects=False,
        )
        assert made.status == 303, await made.text()
    clinician_id = next(s["id"] for s in demo["staff"] if s["role"] == "clinician")
    async with server.app[ENGINE].connect() as conn:
        row = (
            await conn.execute(
                sa.select(appointments, sessions.c.kind)
                .join(sessions, sessions.c.appointment_id == appointments.c.id)
                .where(
                    appointments.c.patient_id == patient["id"],
                    appointments.c.template == "tech-test-10",
                )
            )
        ).one()
    assert row.kind == "individual"
    assert row.clinician_id == clinician_id
    assert (row.ends_at - row.starts_at).total_seconds() == 600


async def test_a_second_test_replaces_the_first(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = demo["groups"][0]["patients"][2]
    async with await _patient_phone(server, patient) as phone:
        first = await phone.ws_connect("/ws/techcheck")
        assert (await first.receive_json(timeout=10))["type"] == "ready"
        second = await phone.ws_connect("/ws/techcheck")
        messages = []
        while (frame := await first.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
            messages.append(json.loads(frame.data))
        assert frame.type is aiohttp.WSMsgType.CLOSE and frame.data == 4003
        assert (await second.receive_json(timeout=10))["type"] == "ready"
        assert server.app[ECHOES][patient["id"]].ws is not None
        await second.send_json({"type": "bye"})
        await second.receive(timeout=10)
        await first.close()
        await second.close()
