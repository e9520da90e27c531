"""The consent ledger's chain and signatures, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from rooms.consent import current_consents, row_hash
from server import chain
from server.catalog import patients as catalog_patients
from server.catalog import store as catalog
from server.catalog.schemas import PatientIn, ProgramIn
from server.consent import ledger as consent_ledger
from server.phi import add_signing_key, ensure_keyring, load_keyring, verify_signature
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.storage.tables import consent_events
from tests.conftest import ROOT

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)


@pytest.fixture
async def ledger(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Path, str]]:
    engine = create_engine(database_url)
    await upgrade(engine)
    key_file = tmp_path / "secret.key"
    keyring, _ = ensure_keyring(key_file)
    async with engine.begin() as conn:
        program = await catalog.create_program(
            conn, ProgramIn(name="P", phone="(555) 010-0100"), NOW
        )
        patient = await catalog_patients.create_patient(
            conn,
            keyring,
            PatientIn(program_id=program["id"], legal_name="Led Ger", display_name="L"),
            NOW,
        )
        for n, kind in enumerate(("telehealth", "emergency_plan", "telehealth")):
            await consent_ledger.append(
                conn,
                keyring,
                patient_id=patient["id"],
                kind=kind,
                event="consented",
                template_id="t",
                template_version=n + 1,
                text_sha256="0" * 64,
                language="en",
                presented_at=NOW,
                consented_at=NOW + dt.timedelta(minutes=n),
                method="e_signature",
                signer_role="patient",
                signature="Led Ger Signature",
                context={"user_agent": "test", "address": "127.0.0.1"},
                supersedes=1 if n == 2 else None,
                recorded_at=NOW,
            )
        await consent_ledger.append(
            conn,
            keyring,
            patient_id=patient["id"],
            kind="emergency_plan",
            event="revoked",
            revokes=2,
            reason="moving away",
            recorded_at=NOW,
        )
    try:
        yield engine, key_file, patient["id"]
    finally:
        await engine.dispose()


async def _verify(engine: AsyncEngine, key_file: Path) -> chain.Verification:
    async with engine.connect() as conn:
        return await consent_ledger.verify(conn, load_keyring(key_file))


async def test_an_untouched_ledger_verifies_and_replays(
    ledger: tuple[AsyncEngine, Path, str],
) -> None:
    engine, key_file, patient_id = ledger
    assert (await _verify(engine, key_file)).rows == 4
    async with engine.connect() as conn:
        events = await consent_ledger.events_of(conn, load_keyring(key_file), patient_id)
    current = current_consents(events)
    assert list(current) == ["telehealth"]  # emergency plan revoked
    assert current["telehealth"].version == 3


async def test_an_edited_row_is_found(ledger: tuple[AsyncEngine, Path, str]) -> None:
    engine, key_file, _ = ledger
    async with engine.begin() as conn:
        await conn.execute(
            consent_events.update().where(consent_events.c.seq == 2).values(method="paper_scanned")
        )
    result = await _verify(engine, key_file)
    assert (result.broken_at, result.column) == (2, "method")


async def test_a_deleted_row_is_found(ledger: tuple[AsyncEngine, Path, str]) -> None:
    engine, key_file, _ = ledger
    async with engine.begin() as conn:
        await conn.execute(consent_events.delete().where(consent_events.c.seq == 3))
    result = await _verify(engine, key_file)
    assert (result.broken_at, result.reason) == (3, "row is missing")
    async with engine.begin() as conn:
        await conn.execute(consent_events.delete().where(consent_events.c.seq == 4))
    assert (
        await _verify(engine, key_file)
    ).reason == "rows after the last one present were removed"


async def test_a_forged_signature_is_found(ledger: tuple[AsyncEngine, Path, str]) -> None:
    engine, key_file, _ = ledger
    async with engine.begin() as conn:
        await conn.execute(
            consent_events.update()
            .where(consent_events.c.seq == 3)
            .values(signature=base64.b64encode(b"\x00" * 64).decode())
        )
    result = await _verify(engine, key_file)
    assert (result.broken_at, result.column) == (3, "signature")


async def test_a_rewritten_row_with_a_recomputed_hash_still_fails_its_signature(
    ledger: tuple[AsyncEngine, Path, str],
) -> None:
    engine, key_file, _ = ledger
    async with engine.begin() as conn:
        row = (await conn.execute(sa.select(consent_events).where(consent_events.c.seq == 4))).one()
        keyring = load_keyring(key_file)
        plain = consent_ledger._plain(keyring, row) | {"revokes": 1}
        await conn.execute(
            consent_events.update()
            .where(consent_events.c.seq == 4)
            .values(revokes=1, hash=row_hash(row.prev_hash, plain))
        )
    result = await _verify(engine, key_file)
    assert result.broken_at == 4


async def test_rotated_signing_keys_still_verify_old_rows(
    ledger: tuple[AsyncEngine, Path, str],
) -> None:
    engine, key_file, patient_id = ledger
    assert add_signing_key(key_file) == "s2"
    keyring = load_keyring(key_file)
    async with engine.begin() as conn:
        await consent_ledger.append(
            conn,
            keyring,
            patient_id=patient_id,
            kind="telehealth",
            event="refused",
            recorded_at=NOW,
        )
    async with engine.connect() as conn:
        key_ids = [k for (k,) in await conn.execute(sa.select(consent_events.c.key_id))]
    assert key_ids == ["s1", "s1", "s1", "s1", "s2"]
    assert (await _verify(engine, key_file)).ok


def _cli(args: list[str], database_url: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOP_")}
    env.update(
        {
            "DATABASE_URL": database_url,
            "IOP_DATA_DIR": str(key_file.parent),
            "IOP_SECRET_KEY_FILE": str(key_file),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_commands_verify_and_export_for_an_offline_check(
    ledger: tuple[AsyncEngine, Path, str], database_url: str
) -> None:
    engine, key_file, patient_id = ledger
    verified = await asyncio.to_thread(_cli, ["consent", "verify"], database_url, key_file)
    assert verified.returncode == 0, verified.stderr
    assert "intact: 4 rows" in verified.stdout
    exported = await asyncio.to_thread(
        _cli, ["consent", "export", "--patient", patient_id], database_url, key_file
    )
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert [e["event"] for e in data["events"]] == [
        "consented",
        "consented",
        "consented",
        "revoked",
    ]
    assert data["events"][0]["signature"] == "Led Ger Signature"
    for event in data["events"]:
        fields = {name: event[name] for name in data["hashed_fields"]}
        assert row_hash(event["prev_hash"], fields) == event["hash"]
        assert verify_signature(
            data["public_keys"][event["key_id"]], event["hash"].encode(), event["signature_b64"]
        )
    async with engine.begin() as conn:
        await conn.execute(
            consent_events.update().where(consent_events.c.seq == 1).values(kind="recording")
        )
    broken = await asyncio.to_thread(_cli, ["consent", "verify"], database_url, key_file)
    assert broken.returncode == 1
    assert broken.stdout.splitlines() == [
        "consent ledger broken: consent_events row 1: column kind does not match"
    ]
