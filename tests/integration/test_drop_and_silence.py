"""A flagged patient's dropped connection and silence, over real room sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rooms.schedule import zone
from server.appkeys import CLOCK, ENGINE
from server.catalog import patients as catalog_patients
from server.catalog.schemas import PatientIn, SupportPerson
from server.crisis import store as crisis_store
from server.crisis import timeline as crisis_timeline
from server.storage.tables import programs
from tests.conftest import CSRF, RunningServer, consent_group, start_server
from tests.integration.test_rooms_ws import Peer, Room

FAST = {
    "IOP_SILENCE_ALERT_SECONDS": "0.5",
    "IOP_SILENCE_CHECK_SECONDS": "0.1",
    "IOP_DROP_CALLBACK_SECONDS": "30",
    "IOP_DROP_WELFARE_SECONDS": "90",
}


@pytest.fixture
async def fast_server(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path / "data", sqlite_url, FAST)
    try:
        yield running
    finally:
        await running.runner.cleanup()


@pytest.fixture
async def live(fast_server: RunningServer) -> AsyncIterator[Room]:
    demo = await fast_server.seed_demo()
    await consent_group(fast_server, demo)
    opened = Room(fast_server, demo)
    try:
        yield opened
    finally:
        await opened.close()


async def _flag(room: Room, host: Peer, index: int) -> str:
    patient = room.group["patients"][index]
    response = await host.http.post(
        "/api/crisis/events",
        json={
            "patient_id": patient["id"],
            "session_id": patient["join_session_id"],
            "level": "high",
        },
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["event_id"])


async def _timeline(server: RunningServer, event_id: str) -> list[dict[str, Any]]:
    async with server.app[ENGINE].connect() as conn:
        return await crisis_timeline.timeline(conn, server.keyring, event_id)


def _drop(message: dict[str, Any], status: str = "dropped") -> bool:
    return message["type"] == "drop_prompt" and message["status"] == status


async def test_a_flagged_patient_drop_prompts_the_facilitators_only_and_steps_are_logged(
    live: Room,
) -> None:
    server = live.server
    host = await live.staff("clinician", 0)
    cohost = await live.staff("clinician", 1)
    observer = await live.staff("supervisor")
    flagged = await live.admitted(host, 0)
    other = await live.admitted(host, 1)
    event_id = await _flag(live, host, 0)

    await flagged.ws.close()
    prompt = await host.until(_drop)
    assert prompt["event_id"] == event_id and prompt["member_id"] == flagged.me
    steps = prompt["steps"]
    assert [s["action"] for s in steps] == [
        "call_back",
        "backup_phone",
        "support_person",
        "welfare_check",
    ]
    assert steps[0]["text"].startswith("Call back on (555) 010-0150")
    # The consents promise the backup phone after the session phone, before anyone else.
    assert steps[1]["text"] == "Call (555) 010-0101 (backup phone)"
    assert steps[1]["phones"] == ["(555) 010-0101"] and "skipped" not in steps[1]
    assert [s["after_s"] for s in steps] == [0, 30, 60, 90]
    # The demo patient has no support person: the step is there, skipped with the reason.
    assert steps[2]["skipped"] == "no support person on file" and steps[2]["phone"] is None
    # The demo directory has no row for Fresno: the prompt says so rather than inventing one.
    assert "1 Example Street, Fresno, CA 93701" in steps[3]["text"]
    assert (await cohost.until(_drop))["event_id"] == event_id
    await other.quiet(0.5)
    await observer.quiet(0.1)
    for peer in (other, observer):
        assert not [m for m in peer.received if m["type"].startswith("drop_")]
        assert "010-0150" not in repr(peer.received)

    await host.send(
        {"type": "drop_step", "event_id": event_id, "action": "call_back", "outcome": "taken"}
    )
    logged = await cohost.until(lambda m: m["type"] == "drop_step_logged")
    assert logged["action"] == "call_back" and logged["outcome"] == "taken"
    await host.send(
        {
            "type": "drop_step",
            "event_id": event_id,
            "action": "welfare_check",
            "outcome": "skipped",
        }
    )
    refused = await host.until(lambda m: m["type"] == "error")
    assert refused["code"] == "invalid" and "reason" in refused["reason"]
    await host.send(
        {
            "type": "drop_step",
            "event_id": event_id,
            "action": "welfare_check",
            "outcome": "skipped",
            "reason": "patient called back from the session phone",
        }
    )
    await host.until(lambda m: m["type"] == "drop_step_logged" and m["outcome"] == "skipped")
    # A patient cannot log these steps.
    await other.send(
        {"type": "drop_step", "event_id": event_id, "action": "call_back", "outcome": "taken"}
    )
    assert (await other.until(lambda m: m["type"] == "error"))["code"] == "forbidden"

    recorded = [s for s in await _timeline(server, event_id) if s["kind"] == "drop_follow_up"]
    assert [(s["data"]["action"], s["data"]["outcome"]) for s in recorded] == [
        ("support_person", "skipped"),
        ("call_back", "taken"),
        ("welfare_check", "skipped"),
    ]
    assert recorded[0]["actor_type"] == "system"
    assert recorded[0]["data"]["reason"] == "no support person on file"
    assert recorded[0]["step_no"] == steps[2]["step_no"]
    assert recorded[2]["data"]["reason"] == "patient called back from the session phone"
    assert recorded[1]["actor_type"] == "staff"
    # The drop itself came in through the crisis entry point, once, onto the same event.
    dropped = [
        s
        for s in await _timeline(server, event_id)
        if s["kind"] == "concern_added" and s["data"]["trigger"] == "dropped"
    ]
    assert len(dropped) == 1

    back = await live._open(flagged.http)
    assert back.me == flagged.me
    cleared = await host.until(lambda m: _drop(m, "reconnected"))
    assert cleared["member_id"] == flagged.me

    # An unflagged patient's drop prompts nobody.
    await other.ws.close()
    await host.until(lambda m: m["type"] == "member" and m["member"]["id"] == other.me)
    await host.quiet(0.5)
    assert not [m for m in host.received if _drop(m) and m["member_id"] == other.me]


async def test_a_silent_flagged_patient_adds_one_silence_step_per_episode(live: Room) -> None:
    server = live.server
    host = await live.staff("clinician", 0)
    await live.admitted(host, 0)
    await live.admitted(host, 1)
    await host.send({"type": "start"})
    await host.until(lambda m: m["type"] == "room" and m["state"] == "live")
    event_id = await _flag(live, host, 0)

    async def silence_steps() -> list[dict[str, Any]]:
        return [
            s
            for s in await _timeline(server, event_id)
            if s["kind"] == "concern_added" and s["data"]["trigger"] == "silence"
        ]

    async with asyncio.timeout(5):
        while True:
            if await silence_steps():
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # the same silence goes on: no second step
    found = await silence_steps()
    assert len(found) == 1
    assert found[0]["actor_type"] == "system" and found[0]["data"]["detail"]["silent_s"] >= 0
    # The unflagged patient, just as silent, got no event.
    async with server.app[ENGINE].connect() as conn:
        other = live.group["patients"][1]
        assert (
            await crisis_store.open_event_for(conn, other["id"], other["join_session_id"]) is None
        )


async def test_a_withdrawn_emergency_plan_consent_skips_the_support_person_at_once(
    live: Room,
) -> None:
    server = live.server
    patient = live.group["patients"][0]
    async with server.app[ENGINE].begin() as conn:
        record = await catalog_patients.get_patient(conn, server.keyring, patient["id"])
        assert record is not None
        fields = {k: record[k] for k in PatientIn.model_fields if k in record}
        fields["support_person"] = SupportPerson(
            name="Robin Support", relationship="sister", phone="(555) 010-0177"
        )
        fields["support_release"] = True
        fields["alternate_phone"] = "(555) 010-0188"
        await catalog_patients.update_patient(
            conn, server.keyring, patient["id"], PatientIn(**fields)
        )
    host = await live.staff("clinician", 0)
    flagged = await live.admitted(host, 0)
    event_id = await _flag(live, host, 0)

    await flagged.ws.close()
    steps = (await host.until(_drop))["steps"]
    assert (
        steps[1]["text"]
        == "Call (555) 010-0101 (backup phone), then (555) 010-0188 (alternate phone)"
    )
    assert steps[1]["phones"] == ["(555) 010-0101", "(555) 010-0188"]
    assert steps[2]["phone"] == "(555) 010-0177" and "skipped" not in steps[2]
    flagged = await live._open(flagged.http)
    await host.until(lambda m: _drop(m, "reconnected"))

    # The patient withdraws the emergency-plan consent (the support-person release) by phone.
    page = await (await host.http.get(f"/patients/{patient['id']}")).text()
    token = CSRF.search(page)
    assert token is not None
    withdrawn = await host.http.post(
        f"/patients/{patient['id']}/consents/revoke",
        data={"csrf_token": token.group(1), "kind": "emergency_plan", "reason": "by phone"},
    )
    assert withdrawn.status == 200
    today = await _program_today(server)

    host.received.clear()  # only the prompt of the next drop counts
    await flagged.ws.close()
    steps = (await host.until(lambda m: _drop(m) and m["member_id"] == flagged.me))["steps"]
    support = steps[2]
    assert support["action"] == "support_person" and support["phone"] is None
    assert support["skipped"] == f"release withdrawn {today}"
    assert "010-0177" not in repr(steps)
    logged = [
        s
        for s in await _timeline(server, event_id)
        if s["kind"] == "drop_follow_up" and s["data"]["action"] == "support_person"
    ]
    assert [(s["actor_type"], s["data"]["outcome"], s["data"]["reason"]) for s in logged] == [
        ("system", "skipped", f"release withdrawn {today}")
    ]


async def _program_today(server: RunningServer) -> str:
    async with server.app[ENGINE].connect() as conn:
        time_zone = (await conn.execute(sa.select(programs.c.time_zone))).scalar_one()
    return server.app[CLOCK].now().astimezone(zone(time_zone)).date().isoformat()
