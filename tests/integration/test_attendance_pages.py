"""Attendance pages: figures from recorded events, CSV equal to the page, attestation, week."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any

import sqlalchemy as sa

from server.appkeys import CLOCK, ENGINE
from server.roomsocket.ws import ROOM_JOURNAL
from server.storage.tables import attendance_events, sessions
from tests.conftest import CSRF, RunningServer, consent_group, signed_in, staff_login
from tests.integration.test_rooms_ws import Room


async def _record(
    server: RunningServer, session_id: str, rows: list[tuple[str, str, str, int]]
) -> None:
    async with server.app[ENGINE].begin() as conn:
        starts_at = await conn.scalar(
            sa.select(sessions.c.starts_at).where(sessions.c.id == session_id)
        )
        await conn.execute(
            attendance_events.insert(),
            [
                {
                    "session_id": session_id,
                    "person_type": kind,
                    "person_id": person,
                    "role": "participant" if kind == "patient" else "host",
                    "event": event,
                    "at": starts_at + dt.timedelta(minutes=minute),
                }
                for kind, person, event, minute in rows
            ],
        )


async def test_the_page_and_its_csv_show_the_same_figures_and_can_be_attested(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    group = demo["groups"][0]
    session_id = group["patients"][0]["join_session_id"]
    lead = next(m for m in demo["staff"] if m["email"].startswith("clinician1"))
    avery, blake = group["patients"][0]["id"], group["patients"][1]["id"]
    await _record(
        server,
        session_id,
        [
            ("staff", lead["id"], "joined", 0),
            ("patient", avery, "waiting", 1),
            ("patient", avery, "admitted", 2),
            ("patient", avery, "disconnected", 30),
            ("patient", avery, "joined", 31),
            ("patient", avery, "left", 90),
            ("patient", blake, "admitted", 10),
            ("patient", blake, "left", 40),
            ("staff", lead["id"], "left", 120),
        ],
    )
    server.app[CLOCK].advance(hours=24 * 8)  # the session is over
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        page = await (await clinician.get(f"/sessions/{session_id}/attendance")).text()
        export = await clinician.get(f"/sessions/{session_id}/attendance.csv")
        assert export.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(await export.text())))
        by_name = {r["name"]: r for r in rows}
        assert by_name["Avery"]["minutes_present_excluding_breaks"] == "87.0"
        assert by_name["Avery"]["reconnects"] == "1"
        assert by_name["Blake"]["minutes_present_excluding_breaks"] == "30.0"
        assert by_name["Casey Lead (demo)"]["minutes_present_excluding_breaks"] == "120.0"
        for row in rows:  # every CSV row is on the page with the same figures
            cells = re.search(rf"<td>{re.escape(row['name'])}</td>.*?</tr>", page, flags=re.S)
            assert cells is not None
            assert f"<td>{row['minutes_present_excluding_breaks']}</td>" in cells.group(0)
            assert f"<td>{row['first_join']}</td>" in cells.group(0)
        token = CSRF.search(page)
        assert token is not None
        attested = await clinician.post(
            f"/sessions/{session_id}/attendance/attest", data={"csrf_token": token.group(1)}
        )
        assert "Attested by Casey Lead (demo)" in await attested.text()
        assert "changed since then" not in await attested.text()


async def test_supervisors_see_no_patients_attendance(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    # Per-patient attendance is part of the patient's record; supervisors see every group
    # of their program but no patient records (README, Roles).
    group = demo["groups"][0]
    session_id = group["patients"][0]["join_session_id"]
    await _record(
        server,
        session_id,
        [
            ("patient", group["patients"][0]["id"], "admitted", 0),
            ("patient", group["patients"][0]["id"], "left", 60),
        ],
    )
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        token = CSRF.search(await (await supervisor.get("/dashboard")).text())
        assert token is not None
        for path in (
            f"/sessions/{session_id}/attendance",
            f"/sessions/{session_id}/attendance.csv",
            "/attendance/weekly",
        ):
            refused = await supervisor.get(path)
            assert refused.status == 403, path
            assert "Avery" not in await refused.text()
        refused = await supervisor.post(
            f"/sessions/{session_id}/attendance/attest", data={"csrf_token": token.group(1)}
        )
        assert refused.status == 403
        dashboard = await (await supervisor.get("/dashboard")).text()
        assert "/attendance" not in dashboard


async def test_the_weekly_roll_up_lists_patients_below_the_threshold(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    group = demo["groups"][0]
    avery = group["patients"][0]
    async with server.app[ENGINE].connect() as conn:
        first = await conn.scalar(
            sa.select(sessions.c.starts_at).where(sessions.c.id == avery["join_session_id"])
        )
    await _record(
        server,
        avery["join_session_id"],
        [("patient", avery["id"], "admitted", 0), ("patient", avery["id"], "left", 180)],
    )
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        week = first.astimezone(dt.UTC).date().isoformat()
        page = await (await clinician.get(f"/attendance/weekly?week={week}")).text()
        row = re.search(
            r"<td>Avery</td><td>([\d.]+)</td>.*?<td>(Below threshold|Meets threshold)</td>",
            page,
            re.S,
        )
        assert row is not None and row.group(1) == "3.0" and row.group(2) == "Below threshold"
        assert (await clinician.get("/attendance/weekly?week=not-a-date")).status == 400
        # Everyone else in the group attended nothing: each is listed, first, at 0 hours.
        listed = re.findall(r"<tr class=\"below\"><td>([^<]+)</td><td>([\d.]+)</td>", page)
        others = [p["display_name"] for p in group["patients"][1:]]
        assert sorted(name for name, _ in listed[: len(others)]) == sorted(others)
        assert all(hours in ("0", "0.0") for _, hours in listed[: len(others)])
        assert listed[len(others)] == ("Avery", "3.0")
        assert page.count("No time attended this week") == len(others)


async def test_time_admitted_before_start_counts_as_attended(
    server: RunningServer, demo: dict[str, Any]
) -> None:
    await consent_group(server, demo)
    room = Room(server, demo)
    try:
        host = await room.staff("clinician", 0)
        patient = await room.admitted(host, 0)
        server.app[CLOCK].advance(minutes=10)  # admitted, the facilitator has not started
        await host.send({"type": "start"})
        await host.until(lambda m: m["type"] == "room" and m["state"] == "live")
        server.app[CLOCK].advance(minutes=30)
        await patient.ws.close()
        await host.until(
            lambda m: (
                m["type"] == "member"
                and m["member"]["id"] == patient.me
                and m["member"]["presence"] == "reconnecting"
            )
        )
    finally:
        await room.close()
    await server.app[ROOM_JOURNAL].flush()
    session_id = room.room_id
    async with await signed_in(server, *staff_login(demo, "clinician")) as clinician:
        export = await clinician.get(f"/sessions/{session_id}/attendance.csv")
        rows = {r["name"]: r for r in csv.DictReader(io.StringIO(await export.text()))}
    assert rows["Avery"]["minutes_present_excluding_breaks"] == "40.0"
    assert rows["Avery"]["minutes_before_start"] == "10.0"
