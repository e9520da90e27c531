"""Consent: the steps, the gate on page and socket, versions, revocation, attestation."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import sqlalchemy as sa

from server.appkeys import ENGINE
from server.consent import ledger as consent_ledger
from server.storage.tables import consent_events, consent_templates
from tests.conftest import CSRF, RunningServer, give_checkin, give_consents, signed_in, staff_login

GROUP_KINDS = ["telehealth", "group_confidentiality", "emergency_plan"]


@pytest_asyncio.fixture(autouse=True)
async def checked_in(server: RunningServer, demo: dict[str, Any]) -> None:
    """Consent is the gate under test here: everyone has already checked in."""
    for patient in demo["groups"][0]["patients"]:
        await give_checkin(server, patient["id"], patient["join_session_id"])


def _patient(demo: dict[str, Any], index: int = 0) -> dict[str, str]:
    return demo["groups"][0]["patients"][index]


async def _opened(server: RunningServer, patient: dict[str, str]) -> aiohttp.ClientSession:
    phone = server.client()
    assert (await phone.get(patient["join_url"])).status == 200
    return phone


async def _agree_to_next(phone: aiohttp.ClientSession, name: str = "Avery Example") -> str:
    page = await (await phone.get("/consent")).text()
    kind = re.search(r'action="/consent/([a-z_0-9]+)"', page)
    token = CSRF.search(page)
    assert kind is not None and token is not None, page[:500]
    acks = len(re.findall(r'name="ack_\d+"', page))
    form = {"csrf_token": token.group(1), "full_name": name, "decision": "agree"}
    form |= {f"ack_{i}": "on" for i in range(acks)}
    response = await phone.post(f"/consent/{kind.group(1)}", data=form, allow_redirects=False)
    assert response.status == 303, await response.text()
    return kind.group(1)


async def _gate_open(server: RunningServer, phone: aiohttp.ClientSession, room_id: str) -> bool:
    page = await phone.get("/room", allow_redirects=False)
    try:
        ws = await phone.ws_connect(f"/ws/rooms/{room_id}")
    except aiohttp.WSServerHandshakeError as refused:
        assert refused.status == 403
        assert page.status == 303 and page.headers["Location"] == "/consent"
        return False
    await ws.close()
    assert page.status == 200
    return True


async def test_a_patient_without_consent_is_stopped_by_page_and_by_socket(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _opened(server, patient) as phone:
        room = await phone.get("/room", allow_redirects=False)
        assert room.status == 303 and room.headers["Location"] == "/consent"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await phone.ws_connect(f"/ws/rooms/{patient['join_session_id']}")
        assert refused.value.status == 403


async def test_each_required_document_is_its_own_step_then_the_room_opens(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    async with await _opened(server, patient) as phone:
        first = await (await phone.get("/consent")).text()
        assert "Step 1 of 3" in first
        assert "Consent to telehealth" in first
        assert "Casey Lead (demo) (LMFT 00000 (demo))" in first  # the clinician's licence
        assert "(555) 010-0100" in first
        done = [await _agree_to_next(phone) for _ in GROUP_KINDS]
        assert done == GROUP_KINDS
        after = await phone.get("/consent", allow_redirects=False)
        assert after.headers["Location"] == "/room"
        assert await _gate_open(server, phone, patient["join_session_id"])
    async with server.app[ENGINE].connect() as conn:
        rows = (
            await conn.execute(
                sa.select(consent_events).where(consent_events.c.patient_id == patient["id"])
            )
        ).all()
    assert [(r.kind, r.event, r.method, r.signer_role) for r in rows] == [
        (kind, "consented", "e_signature", "patient") for kind in GROUP_KINDS
    ]
    assert all(r.presented_at <= r.consented_at for r in rows)
    assert "Avery Example" not in repr(rows)  # the typed name is sealed at rest


async def test_every_box_and_a_name_are_needed_and_refusal_is_recorded_not_consent(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _opened(server, _patient(demo)) as phone:
        page = await (await phone.get("/consent")).text()
        token = CSRF.search(page)
        assert token is not None
        partial = await phone.post(
            "/consent/telehealth",
            data={"csrf_token": token.group(1), "ack_0": "on", "full_name": "A B"},
        )
        assert partial.status == 400
        assert "tick each statement" in await partial.text()
        refused = await phone.post(
            "/consent/telehealth", data={"csrf_token": token.group(1), "decision": "refuse"}
        )
        assert refused.status == 200
        assert "(555) 010-0100" in await refused.text()
    async with server.app[ENGINE].connect() as conn:
        events = [
            r.event
            for r in await conn.execute(
                sa.select(consent_events.c.event).where(
                    consent_events.c.patient_id == _patient(demo)["id"]
                )
            )
        ]
    assert events == ["refused"]


async def test_receipt_shows_and_downloads_what_was_signed_and_notes_the_copy(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    async with await _opened(server, _patient(demo)) as phone:
        await _agree_to_next(phone, "Avery Q. Example")
        listing = await (await phone.get("/consent/receipts")).text()
        seq = re.search(r'href="/consent/receipt/(\d+)"', listing)
        assert seq is not None
        receipt = await (await phone.get(f"/consent/receipt/{seq.group(1)}")).text()
        assert "Avery Q. Example" in receipt and "Consent to telehealth" in receipt
        download = await phone.get(f"/consent/receipt/{seq.group(1)}/download")
        assert download.headers["Content-Disposition"].startswith("attachment;")
        text = await download.text()
        assert text.startswith("# Consent to telehealth") and "Avery Q. Example" in text
        await phone.get(f"/consent/receipt/{seq.group(1)}")
    async with server.app[ENGINE].connect() as conn:
        copies = (
            await conn.execute(
                sa.select(consent_events.c.method).where(consent_events.c.event == "copy_provided")
            )
        ).all()
    assert [c.method for c in copies] == ["receipt_page"]  # noted once, not per view


async def test_a_new_version_requiring_reconsent_closes_the_gate_until_agreed(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    await give_consents(server, patient["id"], patient["join_session_id"])
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        page = await (await admin.get("/admin/consents?kind=telehealth")).text()
        token = CSRF.search(page)
        assert token is not None
        source = (
            "# Consent to telehealth\n\nNew wording for {program_name}.\n\n"
            "## You confirm\n- [ ] I agree to the new wording.\n"
        )
        quiet = await admin.post(
            "/admin/consents",
            data={"csrf_token": token.group(1), "kind": "telehealth", "source": source},
            allow_redirects=False,
        )
        assert quiet.status == 303
        async with await _opened(server, patient) as phone:
            assert await _gate_open(server, phone, patient["join_session_id"])
        bumped = await admin.post(
            "/admin/consents",
            data={
                "csrf_token": token.group(1),
                "kind": "telehealth",
                "source": source.replace("New wording", "Newer wording"),
                "requires_reconsent": "on",
            },
            allow_redirects=False,
        )
        assert bumped.status == 303
        broken = await admin.post(
            "/admin/consents",
            data={"csrf_token": token.group(1), "kind": "telehealth", "source": "no title"},
        )
        assert broken.status == 400
    async with await _opened(server, patient) as phone:
        assert not await _gate_open(server, phone, patient["join_session_id"])
        step = await (await phone.get("/consent")).text()
        assert "has changed since you last agreed" in step and "Newer wording" in step
        assert await _agree_to_next(phone) == "telehealth"
        assert await _gate_open(server, phone, patient["join_session_id"])
    async with server.app[ENGINE].connect() as conn:
        versions = [v for (v,) in await conn.execute(sa.select(consent_templates.c.version))]
    assert sorted(versions)[-3:] == [1, 2, 3]


async def test_revocation_by_the_patient_or_by_staff_closes_the_gate(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    first, second = _patient(demo, 0), _patient(demo, 1)
    for patient in (first, second):
        await give_consents(server, patient["id"], patient["join_session_id"])
    async with await _opened(server, first) as phone:
        listing = await (await phone.get("/consent/receipts")).text()
        seq = re.search(r'href="/consent/receipt/(\d+)"', listing)
        assert seq is not None
        receipt = await (await phone.get(f"/consent/receipt/{seq.group(1)}")).text()
        token = CSRF.search(receipt)
        assert token is not None
        await phone.post(
            f"/consent/receipt/{seq.group(1)}/revoke",
            data={"csrf_token": token.group(1), "reason": "changed my mind"},
        )
        assert not await _gate_open(server, phone, first["join_session_id"])
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/patients/{second['id']}")).text()
        token = CSRF.search(page)
        assert token is not None
        no_reason = await clinician.post(
            f"/patients/{second['id']}/consents/revoke",
            data={"csrf_token": token.group(1), "kind": "emergency_plan", "reason": ""},
        )
        assert no_reason.status == 400
        revoked = await clinician.post(
            f"/patients/{second['id']}/consents/revoke",
            data={"csrf_token": token.group(1), "kind": "emergency_plan", "reason": "by phone"},
        )
        assert revoked.status == 200
        assert "not given" in await revoked.text()
    async with await _opened(server, second) as phone:
        assert not await _gate_open(server, phone, second["join_session_id"])


async def test_verbal_consent_needs_a_witness_and_records_both(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    witness = next(m for m in demo["staff"] if m["email"].startswith("clinician2"))
    lead = next(m for m in demo["staff"] if m["email"].startswith("clinician1"))
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/patients/{patient['id']}")).text()
        token = CSRF.search(page)
        assert token is not None
        for witness_id in ("", lead["id"]):
            refused = await clinician.post(
                f"/patients/{patient['id']}/consents/verbal",
                data={"csrf_token": token.group(1), "kind": "telehealth", "witness_id": witness_id},
            )
            assert refused.status == 400
            assert "needs a witness" in await refused.text()
        for kind in GROUP_KINDS:
            recorded = await clinician.post(
                f"/patients/{patient['id']}/consents/verbal",
                data={"csrf_token": token.group(1), "kind": kind, "witness_id": witness["id"]},
            )
            assert recorded.status == 200
    async with server.app[ENGINE].connect() as conn:
        rows = (
            await conn.execute(
                sa.select(consent_events).where(consent_events.c.patient_id == patient["id"])
            )
        ).all()
    assert {(r.method, r.obtained_by, r.witness_id) for r in rows} == {
        ("verbal_attested", lead["id"], witness["id"])
    }
    async with await _opened(server, patient) as phone:
        assert await _gate_open(server, phone, patient["join_session_id"])


async def test_staff_see_each_waiting_patients_consents(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    await give_consents(server, patient["id"], patient["join_session_id"])
    room_id = patient["join_session_id"]
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        host = await clinician.ws_connect(f"/ws/rooms/{room_id}")
        await host.send_json({"type": "hello", "protocol": 1})
        async with await _opened(server, patient) as phone:
            ws = await phone.ws_connect(f"/ws/rooms/{room_id}")
            await ws.send_json({"type": "hello", "protocol": 1})
            own = await ws.receive_json()
            assert "staff_info" not in own["you"]
            while True:
                message = await host.receive_json()
                if message["type"] == "member" and message["member"]["presence"] == "waiting":
                    break
            consents = message["member"]["staff_info"]["consents"]
            assert [c["kind"] for c in consents] == GROUP_KINDS
            assert all(c["method"] == "e_signature" and c["version"] == 1 for c in consents)
            await ws.close()
        await host.close()


async def test_the_ledger_verifies_and_exports_for_offline_checking(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    await give_consents(server, patient["id"], patient["join_session_id"])
    async with server.app[ENGINE].connect() as conn:
        assert (await consent_ledger.verify(conn, server.keyring)).ok
        exported = await consent_ledger.export(conn, server.keyring, patient["id"])
    from rooms.consent import row_hash
    from server.phi import verify_signature

    for event in exported["events"]:
        fields = {name: event[name] for name in exported["hashed_fields"]}
        assert row_hash(event["prev_hash"], fields) == event["hash"]
        key = exported["public_keys"][event["key_id"]]
        assert verify_signature(key, event["hash"].encode(), event["signature_b64"])


async def test_the_program_chooses_what_each_session_type_requires(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    program_id = demo["program"]["id"]
    form = {
        "name": "Demo Evening IOP (example data)",
        "kind": "mental_health",
        "time_zone": "America/Los_Angeles",
        "phone": "(555) 010-0100",
        "join_link_mode": "per_session",
        "consent_group_custom": "on",
        "consent_group": "telehealth",
    }
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        page = await (await admin.get(f"/admin/programs/{program_id}")).text()
        token = CSRF.search(page)
        assert token is not None
        saved = await admin.post(
            f"/admin/programs/{program_id}",
            data={"csrf_token": token.group(1), **form},
            allow_redirects=False,
        )
        assert saved.status == 303
        async with await _opened(server, patient) as phone:
            assert "Step 1 of 1" in await (await phone.get("/consent")).text()
            assert await _agree_to_next(phone) == "telehealth"
            assert await _gate_open(server, phone, patient["join_session_id"])


async def _program_settings(server: RunningServer, demo: dict[str, Any], **extra: str) -> None:
    program_id = demo["program"]["id"]
    form = {
        "name": "Demo Evening IOP (example data)",
        "kind": "mental_health",
        "time_zone": "America/Los_Angeles",
        "phone": "(555) 010-0100",
        "join_link_mode": "per_session",
    } | extra
    async with await signed_in(server, *staff_login(demo, "admin")) as admin:
        page = await (await admin.get(f"/admin/programs/{program_id}")).text()
        token = CSRF.search(page)
        assert token is not None
        saved = await admin.post(
            f"/admin/programs/{program_id}",
            data={"csrf_token": token.group(1), **form},
            allow_redirects=False,
        )
        assert saved.status == 303, await saved.text()


async def _socket_opens(phone: aiohttp.ClientSession, room_id: str) -> bool:
    try:
        ws = await phone.ws_connect(f"/ws/rooms/{room_id}")
    except aiohttp.WSServerHandshakeError as refused:
        assert refused.status == 403
        return False
    await ws.close()
    return True


async def test_recording_is_asked_for_once_and_a_patient_who_declines_still_enters(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    patient = _patient(demo)
    room_id = patient["join_session_id"]
    await give_consents(server, patient["id"], room_id)
    await _program_settings(server, demo, recording_enabled="on")
    async with await _opened(server, patient) as phone:
        assert await _socket_opens(phone, room_id)  # recording is never a gate
        offered = await phone.get("/room", allow_redirects=False)
        assert offered.status == 303 and offered.headers["Location"] == "/consent"
        step = await (await phone.get("/consent")).text()
        assert "Consent to record a session" in step
        assert "This one is your choice" in step and "No, thank you" in step
        token = CSRF.search(step)
        assert token is not None
        declined = await phone.post(
            "/consent/recording",
            data={"csrf_token": token.group(1), "decision": "refuse"},
            allow_redirects=False,
        )
        assert declined.status == 303 and declined.headers["Location"] == "/consent"
        after = await phone.get("/consent", allow_redirects=False)
        assert after.headers["Location"] == "/room"
        assert await _gate_open(server, phone, room_id)  # not asked again
    async with server.app[ENGINE].connect() as conn:
        rows = (await conn.execute(sa.select(consent_events.c.kind, consent_events.c.event))).all()
    assert ("recording", "refused") in [tuple(r) for r in rows]
    assert ("recording", "consented") not in [tuple(r) for r in rows]


async def test_part2_is_offered_in_substance_use_programs_but_treatment_never_depends_on_it(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    first, second = _patient(demo, 0), _patient(demo, 1)
    for patient in (first, second):
        await give_consents(server, patient["id"], patient["join_session_id"])
    await _program_settings(server, demo, kind="substance_use")
    async with await _opened(server, first) as phone:
        assert await _socket_opens(phone, first["join_session_id"])
        step = await (await phone.get("/consent")).text()
        assert "42 CFR Part 2" in step and "This one is your choice" in step
        assert "Step 4 of 4" in step
        assert await _agree_to_next(phone) == "part2"
        assert await _gate_open(server, phone, first["join_session_id"])
    async with await _opened(server, second) as phone:
        step = await (await phone.get("/consent")).text()
        token = CSRF.search(step)
        assert token is not None
        declined = await phone.post(
            "/consent/part2",
            data={"csrf_token": token.group(1), "decision": "refuse"},
            allow_redirects=False,
        )
        assert declined.status == 303
        assert await _gate_open(server, phone, second["join_session_id"])
    async with server.app[ENGINE].connect() as conn:
        current = await consent_ledger.standing(conn, server.keyring, first["id"])
    assert "part2" in current
