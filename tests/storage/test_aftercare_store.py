"""Aftercare plans in storage, on SQLite and PostgreSQL: sealed, versioned, never edited."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from care.aftercare import parse_plan
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.catalog.schemas import PatientIn, ProgramIn
from server.outcomes import store
from server.phi import new_keyring
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.storage.tables import aftercare_plans

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
KEYRING = new_keyring()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_each_save_is_a_new_sealed_version_and_the_newest_is_current(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        program = await catalog.create_program(
            conn, ProgramIn(name="North IOP", phone="(555) 010-0100"), NOW
        )
        patient = await catalog_patients.create_patient(
            conn,
            KEYRING,
            PatientIn(program_id=program["id"], legal_name="Pat Example", display_name="Pat"),
            NOW,
        )
        assert await store.current_plan(conn, KEYRING, patient["id"]) is None
        first = parse_plan(
            {"step_down": "php", "triggers": "Late nights"},
            NOW.date(),
            program_phone="(555) 010-0100",
            safety_plan=(("warning_signs", "Pacing"),),
            safety_plan_version=1,
        )
        second = parse_plan(
            {"step_down": "standard_outpatient"}, NOW.date(), program_phone="(555) 010-0100"
        )
        assert await store.save_plan(conn, KEYRING, patient["id"], first, None, NOW) == 1
        later = NOW + dt.timedelta(hours=1)
        assert await store.save_plan(conn, KEYRING, patient["id"], second, None, later) == 2
    async with engine.connect() as conn:
        current = await store.current_plan(conn, KEYRING, patient["id"])
        assert current is not None
        assert (current.version, current.plan, current.recorded_at) == (2, second, later)
        stored = list(await conn.execute(sa.select(aftercare_plans.c.plan_enc)))
        assert len(stored) == 2 and not any("Late nights" in row.plan_enc for row in stored)
    with pytest.raises(IntegrityError):  # one row per version
        async with engine.begin() as conn:
            await conn.execute(
                aftercare_plans.insert().values(
                    id="x",
                    patient_id=patient["id"],
                    version=2,
                    plan_enc="v1:k1:x",
                    recorded_at=NOW,
                )
            )
