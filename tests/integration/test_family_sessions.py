"""Family sessions: the support person's link, identity check, own consent and room."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any

import aiohttp
import sqlalchemy as sa

from rooms.closecodes import CloseCode
from server.appkeys import CLOCK, ENGINE
from server.storage.tables import (
    appointments,
    attendance_events,
    audit_log,
    consent_events,
    family_sessions,
    sessions,
    support_links,
)
from tests.conftest import (
    CSRF,
    RunningServer,
    give_checkin,
    give_consents,
    signed_in,
    staff_login,
)

TIMEOUT = 5.0
SUPPORT_URL = re.compile(r'aria-label="Support-person link" readonly value="([^"]+)"')


async def _token(client: aiohttp.ClientSession, path: str) -> str:
    async with client.get(path) as response:
        match = CSRF.search(await response.text())
    assert match, path
    return match.group(1)


async def _family_session_soon(server: RunningServer, demo: dict[str, Any]) -> str:
    """A family session for the demo's family patient starting in five minutes."""
    starts = server.app[CLOCK].now() + dt.timedelta(minutes=5)
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        created = await admin.post(
            "/api/appointments",
            json={
                "program_id": demo["program"]["id"],
                "patient_id": demo["family"]["patient_id"],
                "clinician_id": demo["family"]["clinician_id"],
                "kind": "family",
                "starts_at": starts.isoformat(),
            },
        )
        assert created.status == 201, await created.text()
        body = await created.json()
    assert body["kind"] == "family" and body["template"] == "family-50"
    return str(body["session_id"])


async def _issue(
    clinician: aiohttp.ClientSession, patient_id: str, session_id: str
) -> aiohttp.ClientResponse:
    token = await _token(clinician, f"/patients/{patient_id}")
    return await clinician.post(
        f"/patients/{patient_id}/support-links",
        data={"csrf_token": token, "session_id": session_id},
    )


async def _issued_url(clinician: aiohttp.ClientSession, patient_id: str, session_id: str) -> str:
    issued = await _issue(clinician, patient_id, session_id)
    page = await issued.text()
    assert issued.status == 201, page
    match = SUPPORT_URL.search(page)
    assert match
    return match.group(1)


async def _support_enters(server: RunningServer, url: str, digits: str = "0150") -> Any:
    """A support person's browser: opens the link, confirms the phone, signs the consent."""
    browser = server.client()
    landing = await browser.get(url)
    assert landing.status == 200
    token = CSRF.search(await landing.text())
    assert token
    checked = await browser.post(url, data={"csrf_token": token.group(1), "phone_last4": digits})
    assert checked.status == 200 and checked.url.path == "/family"
    page = await checked.text()
    assert "Joining a family session" in page
    token = CSRF.search(page)
    assert token
    form = {"csrf_token": token.group(1), "full_name": "Jamie Example"}
    form |= {f"ack_{i}": "on" for i in range(page.count('name="ack_'))}
    signed = await browser.post("/family/consent", data=form)
    assert signed.status == 200 and "Go to the waiting room" in await signed.text()
    return browser


class _Peer:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    async def until(self, match: Any) -> dict[str, Any]:
        for message in self.received:
            if match(message):
                return message
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.ws.receive()
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket ended: {frame.type} {frame.data}")
                message = json.loads(frame.data)
                self.received.append(message)
                if match(message):
                    return message

    async def closed(self) -> int:
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.ws.receive()
                if frame.type is aiohttp.WSMsgType.CLOSE:
                    return int(frame.data)
                if frame.type is aiohttp.WSMsgType.CLOSED:
                    return int(self.ws.close_code or 0)
                self.received.append(json.loads(frame.data))


async def _connect(http: aiohttp.ClientSession, session_id: str) -> _Peer:
    peer = _Peer(await http.ws_connect(f"/ws/rooms/{session_id}"))
    await peer.ws.send_json({"type": "hello", "protocol": 1, "last_seq": None})
    await peer.until(lambda m: m["type"] in ("snapshot", "error"))
    return peer


def _snapshot_admitted(message: dict[str, Any]) -> bool:
    return message["type"] == "snapshot" and message["you"]["presence"] == "admitted"


async def test_support_links_need_a_family_session_and_the_patients_release(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    family = demo["family"]
    group_patient = demo["groups"][0]["patients"][0]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/patients/{family['patient_id']}")).text()
        assert "Family sessions" in page and "Issue support-person link" in page
        # A group session never takes a support person.
        refused = await _issue(clinician, family["patient_id"], group_patient["join_session_id"])
        assert refused.status == 400
        assert "only for family sessions" in await refused.text()
        assert (await _issue(clinician, family["patient_id"], "nonsense")).status == 400
        url = await _issued_url(clinician, family["patient_id"], family["session_id"])
        assert "/s/" in url
        # The patient withdraws the release: the link stops and the button is disabled.
        token = await _token(clinician, f"/patients/{family['patient_id']}")
        withdrawn = await clinician.post(
            f"/patients/{family['patient_id']}/consents/revoke",
            data={"csrf_token": token, "kind": "family_release", "reason": "asked by patient"},
        )
        assert withdrawn.status == 200
        page = await withdrawn.text()
        assert "has not signed the family session release" in page
        assert "disabled" in page
        again = await _issue(clinician, family["patient_id"], family["session_id"])
        assert again.status == 400 and "release" in await again.text()
    async with server.client() as stranger:
        assert (await stranger.get(url)).status == 410
    async with server.app[ENGINE].connect() as conn:
        rows = (await conn.execute(sa.select(support_links))).all()
        actions = set(await conn.scalars(sa.select(audit_log.c.action)))
    assert len(rows) == 1 and rows[0].revoked_at is not None
    assert {"support_link.issued", "patient.phi_read"} <= actions
    # Nothing about the support person in the stored link row.
    assert "Jamie" not in repr(rows[0])


async def test_the_clinician_schedules_a_family_session_from_the_patients_page(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    family = demo["family"]
    path = f"/patients/{family['patient_id']}/family-sessions"
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/patients/{family['patient_id']}")).text()
        assert "Schedule family session" in page
        token = await _token(clinician, f"/patients/{family['patient_id']}")
        for bad in ("next week", "2020-01-01T10:00", "2099-03-02T17:30-05:00"):
            refused = await clinician.post(
                path, data={"csrf_token": token, "starts_at": bad}, allow_redirects=False
            )
            assert refused.status == 400, bad
            assert "family session" in await refused.text()
        no_csrf = await clinician.post(path, data={"starts_at": "2099-03-02T17:30"})
        assert no_csrf.status == 400
        made = await clinician.post(
            path, data={"csrf_token": token, "starts_at": "2099-03-02T17:30"}, allow_redirects=False
        )
        assert made.status == 303 and made.headers["Location"].endswith("#family-sessions")
        page = await (await clinician.get(f"/patients/{family['patient_id']}")).text()
        assert "Family session Mon Mar 2, 5:30 PM PST" in page
    async with server.app[ENGINE].connect() as conn:
        row = (
            await conn.execute(
                sa.select(appointments, sessions.c.id.label("session_id"))
                .join(sessions, sessions.c.appointment_id == appointments.c.id)
                .join(family_sessions, family_sessions.c.session_id == sessions.c.id)
                .where(appointments.c.starts_at > server.app[CLOCK].now() + dt.timedelta(days=365))
            )
        ).one()
        actions = list(
            await conn.scalars(
                sa.select(audit_log.c.detail).where(audit_log.c.action == "appointment.created")
            )
        )
    assert row.template == "family-50" and row.patient_id == family["patient_id"]
    assert (row.ends_at - row.starts_at) == dt.timedelta(minutes=50)
    assert {"template": "family-50", "kind": "family"} in actions


async def test_five_wrong_phone_answers_revoke_the_link_however_many_arrive_at_once(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    family = demo["family"]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        url = await _issued_url(clinician, family["patient_id"], family["session_id"])
    async with server.client() as browser:
        landing = await browser.get(url)
        assert "last 4 digits" in await landing.text()
        token = CSRF.search(await landing.text())
        assert token
        short = await browser.post(url, data={"csrf_token": token.group(1), "phone_last4": "1"})
        assert short.status == 400  # not an answer: asked again, not counted
        answers = await asyncio.gather(
            *(
                browser.post(url, data={"csrf_token": token.group(1), "phone_last4": "9999"})
                for _ in range(8)
            )
        )
        statuses = sorted(r.status for r in answers)
        assert statuses.count(400) == 4 and statuses.count(410) == 4
        right = await browser.post(url, data={"csrf_token": token.group(1), "phone_last4": "0150"})
        assert right.status == 410
    async with server.app[ENGINE].connect() as conn:
        row = (await conn.execute(sa.select(support_links))).one()
    assert row.phone_failures == 5 and row.revoked_at is not None


async def test_support_person_sees_only_the_patient_and_clinician_and_attendance_records_them(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    family = demo["family"]
    session_id = await _family_session_soon(server, demo)
    await give_consents(server, family["patient_id"], session_id)
    await give_checkin(server, family["patient_id"], session_id)
    host_http = await signed_in(server, *staff_login(demo, "clinician"))
    supervisor_http = await signed_in(server, *staff_login(demo, "supervisor"))
    patient_http = server.client()
    try:
        link = await host_http.post(
            f"/api/patients/{family['patient_id']}/join-links", json={"session_id": session_id}
        )
        assert link.status == 201
        assert (await patient_http.get((await link.json())["url"])).status == 200
        url = await _issued_url(host_http, family["patient_id"], session_id)
        # The link is bound to its family session: the demo's other one is refused.
        support_http = await _support_enters(server, url)
        try:
            await support_http.ws_connect(f"/ws/rooms/{family['session_id']}")
            raise AssertionError("a support link opened another session's room")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 403
        other_room = await support_http.get(
            f"/rooms/{demo['groups'][0]['patients'][0]['join_session_id']}"
        )
        assert other_room.status in (401, 403)

        host = await _connect(host_http, session_id)
        observer = await _connect(supervisor_http, session_id)
        patient = await _connect(patient_http, session_id)
        support = await _connect(support_http, session_id)
        first = support.received[0]
        assert first["you"]["presence"] == "waiting"
        assert first["you"]["role"] == "support_person"
        assert first["you"]["name"] == "Support person (sister)"
        waiting = await host.until(
            lambda m: m["type"] == "member" and m["member"]["role"] == "support_person"
        )
        await host.ws.send_json({"type": "admit", "member_id": patient.received[0]["you"]["id"]})
        await patient.until(_snapshot_admitted)
        await host.ws.send_json({"type": "admit", "member_id": waiting["member"]["id"]})
        snapshot = await support.until(_snapshot_admitted)
        names = {m["name"] for m in snapshot["members"]}
        assert names == {"Casey Lead (demo)", "Riley", "Support person (sister)"}
        assert all("staff_info" not in m for m in snapshot["members"])
        text = json.dumps(support.received)
        for secret in ("Sam Supervisor", "Jamie", "Example", "staff_info", "consents"):
            assert secret not in text, secret
        # Media, chat and leaving only: no help button, hand, private message or check-in.
        for message in (
            {"type": "help", "text": "", "press_id": "p1"},
            {"type": "raise_hand", "raised": True},
            {"type": "chat", "to": "staff", "text": "psst"},
            {"type": "react", "reaction": "thumbs_up"},
            {"type": "admit_all"},
        ):
            await support.ws.send_json(message)
            error = await support.until(lambda m: m["type"] == "error")
            assert error["code"] == "forbidden", message
            support.received.remove(error)
        await support.ws.send_json({"type": "chat", "to": "room", "text": "Hello from me"})
        said = await patient.until(lambda m: m["type"] == "chat" and m["text"] == "Hello from me")
        assert said["from_name"] == "Support person (sister)"
        # A private room is a patient's crisis path: never opened with a support person.
        await host.ws.send_json(
            {"type": "private_room", "member_id": support.received[0]["you"]["id"], "open": True}
        )
        assert (await host.until(lambda m: m["type"] == "error"))["code"] == "invalid"
        await support.ws.close()
        await host.until(
            lambda m: (
                m["type"] == "member"
                and m["member"]["role"] == "support_person"
                and m["member"]["presence"] == "reconnecting"
            )
        )
        for peer in (host, observer, patient):
            await peer.ws.close()
        await support_http.close()
        # Attendance: the support person's join and leave, shown by relationship only.
        async with asyncio.timeout(TIMEOUT):
            while True:
                async with server.app[ENGINE].connect() as conn:
                    kinds = set(
                        await conn.scalars(
                            sa.select(attendance_events.c.person_type).where(
                                attendance_events.c.session_id == session_id
                            )
                        )
                    )
                if "support" in kinds:
                    break
                await asyncio.sleep(0.05)
        csv = await (await host_http.get(f"/sessions/{session_id}/attendance.csv")).text()
        assert "Support person (sister),support_person" in csv
        assert "Jamie" not in csv
    finally:
        for http in (host_http, supervisor_http, patient_http):
            await http.close()
    async with server.app[ENGINE].connect() as conn:
        signed = (
            await conn.execute(
                sa.select(consent_events).where(consent_events.c.kind == "family_participant")
            )
        ).one()
    assert signed.signer_role == "support_person" and signed.session_id == session_id


async def test_withdrawing_the_release_takes_the_room_from_the_support_person(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    family = demo["family"]
    session_id = await _family_session_soon(server, demo)
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        url = await _issued_url(clinician, family["patient_id"], session_id)
        support_http = await _support_enters(server, url)
        try:
            room_page = await support_http.get("/family/room")
            page = await room_page.text()
            assert room_page.status == 200 and 'data-role="support_person"' in page
            assert "I need help" not in page and "help-form" not in page
            support = await _connect(support_http, session_id)
            assert support.received[0]["you"]["presence"] == "waiting"
            token = await _token(clinician, f"/patients/{family['patient_id']}")
            await clinician.post(
                f"/patients/{family['patient_id']}/consents/revoke",
                data={"csrf_token": token, "kind": "family_release", "reason": "changed mind"},
            )
            assert await support.closed() == CloseCode.LINK_REVOKED
            assert (await support_http.get("/family")).status in (401, 410)
        finally:
            await support_http.close()


async def test_the_patient_signs_the_release_ahead_from_their_link(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    family = demo["family"]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        token = await _token(clinician, f"/patients/{family['patient_id']}")
        await clinician.post(
            f"/patients/{family['patient_id']}/consents/revoke",
            data={"csrf_token": token, "kind": "family_release", "reason": "re-sign"},
        )
    patient = demo["groups"][0]["patients"][-1]
    assert patient["id"] == family["patient_id"]
    async with server.client() as phone:
        home = await (await phone.get(patient["join_url"])).text()
        assert 'href="/family/release"' in home
        page = await (await phone.get("/family/release")).text()
        assert "Jamie Example" in page and "Family session: release" in page
        token = CSRF.search(page)
        assert token
        unticked = await phone.post(
            "/family/release", data={"csrf_token": token.group(1), "full_name": "Riley Example"}
        )
        assert unticked.status == 400 and "tick each statement" in await unticked.text()
        form = {"csrf_token": token.group(1), "full_name": "Riley Example"}
        form |= {f"ack_{i}": "on" for i in range(3)}
        signed = await phone.post("/family/release", data=form)
        assert signed.status == 200 and "You agreed on" in await signed.text()
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        assert await _issued_url(clinician, family["patient_id"], family["session_id"])
