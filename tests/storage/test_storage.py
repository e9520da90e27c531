"""Storage behaviour, run once on SQLite and once on PostgreSQL."""

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import AppointmentIn, GroupIn, PatientIn, ProgramIn, SlotIn, StaffIn
from server.phi import new_keyring
from server.storage.engine import create_engine
from server.storage.migrate import current_revision, head_revision, upgrade
from server.storage.tables import group_members, patients, sessions

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)  # Monday 12:00 in Los Angeles
KEYRING = new_keyring()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _program_with_staff(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.begin() as conn:
        program = await catalog.create_program(
            conn, ProgramIn(name="North IOP", phone="(555) 010-0100"), NOW
        )
        ids: dict[str, Any] = {"program": program["id"], "clinicians": []}
        for n in range(2):
            clinician = await catalog.create_staff(
                conn,
                StaffIn(
                    program_id=program["id"],
                    email=f"c{n}@example.org",
                    display_name=f"Clinician {n}",
                    role="clinician",
                    password="x" * 12,
                ),
                "hash",
                NOW,
            )
            ids["clinicians"].append(clinician["id"])
        ids["patients"] = []
        for n in range(3):
            patient = await catalog_patients.create_patient(
                conn,
                KEYRING,
                PatientIn(
                    program_id=program["id"],
                    legal_name=f"Canary Patient {n}",
                    display_name=f"P{n}",
                    home_address=f"{n} Canary Lane, Fresno, CA 93701",
                    backup_phone="(555) 010-0150",
                    date_of_birth=dt.date(1990, 1, 2),
                ),
                NOW,
            )
            ids["patients"].append(patient["id"])
    return ids


def _group(ids: dict[str, Any], **overrides: Any) -> GroupIn:
    fields: dict[str, Any] = {
        "program_id": ids["program"],
        "name": "Evening A",
        "lead_clinician_id": ids["clinicians"][0],
        "cofacilitator_id": ids["clinicians"][1],
        "member_ids": ids["patients"],
        "schedule": [
            SlotIn(day=d, start="18:00", end="21:00") for d in ("mon", "tue", "wed", "fri")
        ],
        "starts_on": dt.date(2026, 11, 23),
    }
    return GroupIn(**(fields | overrides))


async def test_migrations_bring_an_empty_database_to_the_newest_revision(
    engine: AsyncEngine,
) -> None:
    assert await current_revision(engine) == head_revision()
    assert await upgrade(engine) == head_revision()  # a second run changes nothing


async def test_patient_phi_is_stored_encrypted_and_read_back_plain(engine: AsyncEngine) -> None:
    ids = await _program_with_staff(engine)
    async with engine.connect() as conn:
        raw = (await conn.execute(sa.select(patients))).all()
        found = await catalog_patients.list_patients(conn, KEYRING, ids["program"])
    stored = repr(raw)
    # Whole canaries only: a short digit run turns up in ciphertext by chance.
    assert "Canary" not in stored and "010-0150" not in stored and "1990-01-02" not in stored
    by_name = {p["legal_name"]: p for p in found}
    assert sorted(by_name) == [f"Canary Patient {n}" for n in range(3)]
    assert by_name["Canary Patient 0"]["home_address"] == "0 Canary Lane, Fresno, CA 93701"
    assert by_name["Canary Patient 0"]["date_of_birth"] == "1990-01-02"


async def test_group_creates_one_session_per_scheduled_evening_within_the_horizon(
    engine: AsyncEngine,
) -> None:
    ids = await _program_with_staff(engine)
    async with engine.begin() as conn:
        group = await catalog_schedule.create_group(conn, _group(ids), NOW, horizon_days=13)
    assert group["sessions_created"] == 8  # two weeks of Mon/Tue/Wed/Fri
    async with engine.connect() as conn:
        listed = await catalog_schedule.list_sessions(
            conn, ids["program"], NOW, NOW + dt.timedelta(days=14)
        )
    assert len(listed) == 8
    assert listed[0]["starts_at"] == "2026-11-24T02:00:00+00:00"
    assert {s["state"] for s in listed} == {"scheduled"}
    async with engine.begin() as conn:
        # Extending again adds only the days that came into the horizon.
        assert await catalog_schedule.extend_group_sessions(conn, group["id"], NOW, 13) == 0
        assert await catalog_schedule.extend_all_group_sessions(conn, NOW, 20) == 4


async def test_clinicians_see_only_their_groups_and_patients(engine: AsyncEngine) -> None:
    ids = await _program_with_staff(engine)
    async with engine.begin() as conn:
        await catalog_schedule.create_group(
            conn,
            _group(ids, cofacilitator_id=None, member_ids=ids["patients"][:2]),
            NOW,
            horizon_days=7,
        )
        start = NOW + dt.timedelta(days=1)
        await catalog_schedule.create_appointment(
            conn,
            AppointmentIn(
                program_id=ids["program"],
                patient_id=ids["patients"][2],
                clinician_id=ids["clinicians"][1],
                starts_at=start,
            ),
            NOW,
        )
    lead, other = ids["clinicians"]
    async with engine.connect() as conn:
        assert [
            g["name"] for g in await catalog_schedule.list_groups(conn, ids["program"], lead)
        ] == ["Evening A"]
        assert await catalog_schedule.list_groups(conn, ids["program"], other) == []
        assert await catalog_patients.patients_of_clinician(conn, lead) == set(ids["patients"][:2])
        assert await catalog_patients.patients_of_clinician(conn, other) == {ids["patients"][2]}
        window = (NOW, NOW + dt.timedelta(days=8))
        lead_sessions = await catalog_schedule.list_sessions(conn, ids["program"], *window, lead)
        other_sessions = await catalog_schedule.list_sessions(conn, ids["program"], *window, other)
    assert {s["kind"] for s in lead_sessions} == {"group"}
    assert [s["kind"] for s in other_sessions] == ["individual"]


async def test_foreign_keys_and_checks_are_enforced_by_the_database(engine: AsyncEngine) -> None:
    ids = await _program_with_staff(engine)
    async with engine.begin() as conn:
        group = await catalog_schedule.create_group(conn, _group(ids), NOW, horizon_days=1)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                group_members.insert().values(
                    group_id=group["id"], patient_id="0" * 36, joined_on=dt.date(2026, 1, 1)
                )
            )
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                sessions.insert().values(
                    id=catalog.new_id(),
                    program_id=ids["program"],
                    kind="group",
                    group_id=None,
                    appointment_id=None,
                    template="x",
                    starts_at=NOW,
                    ends_at=NOW + dt.timedelta(hours=1),
                    created_at=NOW,
                )
            )


async def test_references_to_the_wrong_people_are_refused_with_the_field(
    engine: AsyncEngine,
) -> None:
    ids = await _program_with_staff(engine)
    async with engine.begin() as conn:
        with pytest.raises(catalog.CatalogError) as caught:
            await catalog_schedule.create_group(
                conn, _group(ids, lead_clinician_id=ids["patients"][0]), NOW, 7
            )
    assert caught.value.field == "lead_clinician_id"
    async with engine.begin() as conn:
        await catalog_schedule.create_group(conn, _group(ids), NOW, 7)
    async with engine.begin() as conn:
        with pytest.raises(catalog.CatalogError) as caught:
            await catalog_schedule.create_group(conn, _group(ids), NOW, 7)
    assert caught.value.status == 409


async def test_timestamps_read_back_timezone_aware_in_utc(engine: AsyncEngine) -> None:
    ids = await _program_with_staff(engine)
    start = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    async with engine.begin() as conn:
        appointment = await catalog_schedule.create_appointment(
            conn,
            AppointmentIn(
                program_id=ids["program"],
                patient_id=ids["patients"][0],
                clinician_id=ids["clinicians"][0],
                starts_at=start,
                minutes=25,
            ),
            NOW,
        )
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(sessions.c.starts_at, sessions.c.ends_at).where(
                    sessions.c.id == appointment["session_id"]
                )
            )
        ).one()
    assert row.starts_at == start
    assert row.starts_at.tzinfo is not None
    assert row.ends_at - row.starts_at == dt.timedelta(minutes=25)


async def test_nodes_starting_at_once_migrate_and_install_shipped_rows_exactly_once(
    postgres_unavailable: str | None,
) -> None:
    """serve --workers starts every node together on a fresh database (PostgreSQL: multi-node
    mode refuses SQLite): each one migrates and installs the shipped rows at start-up, one
    after another, without a failure."""
    from server.app import prepare_database
    from server.storage.tables import consent_templates
    from tests.conftest import _create_postgres_database, _drop_postgres_database

    if postgres_unavailable:
        pytest.skip(postgres_unavailable)
    name, url = await _create_postgres_database()
    database_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        # Without the lock, concurrent migrations block each other for good: bound it.
        revisions = await asyncio.wait_for(
            asyncio.gather(*(prepare_database(e, NOW) for e in engines)), 120
        )
        assert set(revisions) == {head_revision()}
        async with engines[0].connect() as conn:
            shipped = await conn.execute(
                sa.select(consent_templates.c.kind, consent_templates.c.version)
            )
            rows = shipped.all()
        assert rows and len(rows) == len(set(rows))
    finally:
        for engine in engines:
            await engine.dispose()
        await _drop_postgres_database(name)
