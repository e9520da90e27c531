"""The audit chain and PHI key rotation, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server import audit, chain
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.catalog.schemas import PatientIn, ProgramIn, SupportPerson
from server.keyrotation import SEALED_COLUMNS, reencrypt
from server.phi import Keyring, add_key, ensure_keyring, load_keyring
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.storage.tables import audit_log, patients
from tests.conftest import ROOT

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
ACTOR = audit.Actor("staff", "00000000-0000-0000-0000-000000000001", "admin")


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return ensure_keyring(tmp_path / "secret.key")[0]


@pytest.fixture
async def engine(database_url: str, keyring: Keyring) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine, keyring=keyring)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _append(engine: AsyncEngine, keyring: Keyring, count: int) -> None:
    for n in range(count):
        async with engine.begin() as conn:
            await audit.record(
                conn,
                keyring,
                actor=ACTOR,
                action="patient.phi_read",
                now=NOW + dt.timedelta(seconds=n),
                target_type="patient",
                target_id=f"p{n}",
                request_id=f"r{n}",
                detail={"n": n},
            )


async def _verify(engine: AsyncEngine, keyring: Keyring) -> chain.Verification:
    async with engine.connect() as conn:
        return await audit.verify(conn, keyring)


async def test_an_untouched_chain_verifies(engine: AsyncEngine, keyring: Keyring) -> None:
    await _append(engine, keyring, 5)
    result = await _verify(engine, keyring)
    assert result.ok and result.rows == 5


async def test_an_edited_row_is_found(engine: AsyncEngine, keyring: Keyring) -> None:
    await _append(engine, keyring, 5)
    async with engine.begin() as conn:
        await conn.execute(
            audit_log.update().where(audit_log.c.seq == 3).values(action="patient.created")
        )
    result = await _verify(engine, keyring)
    assert (result.broken_at, result.column) == (3, "action")


async def test_a_removed_row_is_found(engine: AsyncEngine, keyring: Keyring) -> None:
    await _append(engine, keyring, 5)
    async with engine.begin() as conn:
        await conn.execute(audit_log.delete().where(audit_log.c.seq == 2))
    result = await _verify(engine, keyring)
    assert (result.broken_at, result.reason) == (2, "row is missing")
    async with engine.begin() as conn:
        await conn.execute(audit_log.delete().where(audit_log.c.seq >= 3))
    result = await _verify(engine, keyring)
    assert not result.ok


async def test_truncating_the_tail_is_found(engine: AsyncEngine, keyring: Keyring) -> None:
    await _append(engine, keyring, 5)
    async with engine.begin() as conn:
        await conn.execute(audit_log.delete().where(audit_log.c.seq == 5))
    result = await _verify(engine, keyring)
    assert (result.broken_at, result.reason) == (5, "rows after the last one present were removed")


async def test_concurrent_appends_stay_one_chain(engine: AsyncEngine, keyring: Keyring) -> None:
    async def one(n: int) -> int:
        async with engine.begin() as conn:
            return await audit.record(
                conn, keyring, actor=ACTOR, action="x", now=NOW, detail={"n": n}
            )

    seqs = await asyncio.gather(*(one(n) for n in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    assert (await _verify(engine, keyring)).ok


def _cli(args: list[str], database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOP_")}
    env.update({"DATABASE_URL": database_url, "IOP_DATA_DIR": str(data_dir)})
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_audit_verify_command_reports_the_first_broken_row(
    engine: AsyncEngine, keyring: Keyring, database_url: str, tmp_path: Path
) -> None:
    await _append(engine, keyring, 4)
    intact = await asyncio.to_thread(_cli, ["audit", "verify"], database_url, tmp_path)
    assert intact.returncode == 0, intact.stderr
    assert "intact: 4 rows" in intact.stdout
    # A column the old hash did not cover is as protected as any other.
    async with engine.begin() as conn:
        await conn.execute(
            audit_log.update().where(audit_log.c.seq == 2).values(actor_type="staffx")
        )
    broken = await asyncio.to_thread(_cli, ["audit", "verify"], database_url, tmp_path)
    assert broken.returncode == 1
    assert broken.stdout.splitlines() == [
        "audit trail broken: audit_log row 2: column actor_type does not match"
    ]


async def test_key_rotation_reencrypts_every_sealed_value_while_old_readers_keep_reading(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    key_file = tmp_path / "secret.key"
    keyring, _ = ensure_keyring(key_file)
    running_server_view = load_keyring(key_file)  # what a server loaded at start-up
    async with engine.begin() as conn:
        program = await catalog.create_program(
            conn, ProgramIn(name="P", phone="(555) 010-0100"), NOW
        )
        made = []
        for n in range(7):
            record = await catalog_patients.create_patient(
                conn,
                keyring,
                PatientIn(
                    program_id=program["id"],
                    legal_name=f"Rotating Person {n}",
                    display_name=f"R{n}",
                    home_address=f"{n} Rotation Road, Fresno, CA 93701",
                    support_person=SupportPerson(
                        name="Sup Port", relationship="sibling", phone="(555) 010-0111"
                    ),
                    support_release=True,
                ),
                NOW,
            )
            made.append(record)
    new_key = add_key(key_file)
    assert new_key == "k2"
    rewritten = await reencrypt(engine, load_keyring(key_file), batch_size=3)
    assert rewritten == 7 * 4  # legal name, display name, address, support person
    async with engine.connect() as conn:
        for sealed in SEALED_COLUMNS:
            if sealed.table is not patients:
                continue
            values = [v for (v,) in await conn.execute(sa.select(patients.c[sealed.column])) if v]
            assert all(v.startswith("v1:k2:") for v in values), sealed.column
        # A server started before the rotation reads the new values (it re-reads the file).
        found = await catalog_patients.list_patients(conn, running_server_view, program["id"])
    assert sorted(p["legal_name"] for p in found) == sorted(p["legal_name"] for p in made)
    assert found[0]["support_person"]["relationship"] == "sibling"
    assert running_server_view.seal("x", context="c").startswith("v1:k2:")
    assert await reencrypt(engine, load_keyring(key_file)) == 0
