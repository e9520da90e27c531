"""Attendance pages: figures from recorded events, CSV equal to the page, attestation, week."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any

import sqlalchemy as sa

from server.appkeys import CLOCK, ENGINE
from server.storage.tables import attendance_events, sessions
from tests.conftest import CSRF, RunningServer, signed_in, staff_login


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
    async with await signed_in(server, *staff_login(demo, "supervisor")) as supervisor:
        token = CSRF.search(
            await (await supervisor.get(f"/sessions/{session_id}/attendance")).text()
        )
        assert token is not None
        refused = await supervisor.post(
            f"/sessions/{session_id}/attendance/attest", data={"csrf_token": token.group(1)}
        )
        assert refused.status == 403


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
