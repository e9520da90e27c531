"""Technology check results in storage, on SQLite and PostgreSQL: the latest per patient."""

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from rooms.techcheck import Thresholds, parse_result
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.catalog.schemas import PatientIn, ProgramIn
from server.phi import new_keyring
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.techcheck import store

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
STEPS = {
    "step_browser": "pass",
    "step_camera": "pass",
    "step_microphone": "pass",
    "step_speaker": "pass",
    "rtt_ms": "55",
    "loss_pct": "1.25",
    "kbps": "390",
    "browser": "firefox",
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_latest_check_per_patient_is_the_newest_run(engine: AsyncEngine) -> None:
    keyring = new_keyring()
    async with engine.begin() as conn:
        program = await catalog.create_program(
            conn, ProgramIn(name="North IOP", phone="(555) 010-0100"), NOW
        )
        ids = []
        for n in range(3):
            patient = await catalog_patients.create_patient(
                conn,
                keyring,
                PatientIn(program_id=program["id"], legal_name=f"P {n}", display_name=f"P{n}"),
                NOW,
            )
            ids.append(patient["id"])
        first = parse_result(
            STEPS | {"step_camera": "problem"}, Thresholds(), relay_configured=False
        )
        second = parse_result(STEPS, Thresholds(), relay_configured=False)
        await store.save(conn, ids[0], first, NOW)
        await store.save(conn, ids[0], second, NOW + dt.timedelta(minutes=5))
        await store.save(conn, ids[1], first, NOW)
    async with engine.connect() as conn:
        latest = await store.latest_for(conn, ids)
        assert await store.runs_since(conn, ids[0], NOW - dt.timedelta(hours=1)) == 2
    assert set(latest) == {ids[0], ids[1]}
    assert latest[ids[0]].passed and latest[ids[0]].summary == "Tech check passed"
    assert latest[ids[0]].checked_at == NOW + dt.timedelta(minutes=5)
    assert (latest[ids[0]].rtt_ms, latest[ids[0]].loss_pct, latest[ids[0]].kbps) == (55, 1.25, 390)
    assert latest[ids[0]].steps["relay"] == "skipped"
    assert latest[ids[1]].summary == "Tech check: problems (camera)"
    assert latest[ids[1]].staff_info()["problems"] == ["camera"]
