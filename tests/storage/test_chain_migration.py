"""Migration 0013: rows written under the old unkeyed hashes are verified, then re-MACed.

The database is brought to revision 0012 and filled the way the code before 0013 wrote
(its SHA-256 row hashes are reproduced here as they were), then upgraded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rooms.consent import row_hash as consent_row_hash
from server import audit
from server.catalog import patients as catalog_patients
from server.catalog import schedule as catalog_schedule
from server.catalog import store as catalog
from server.catalog.schemas import AppointmentIn, InviteIn, PatientIn, ProgramIn
from server.consent import ledger as consent_ledger
from server.crisis import timeline as crisis_timeline
from server.phi import Keyring, ensure_keyring
from server.storage.engine import create_engine
from server.storage.migrate import MigrationRefusedError, current_revision, upgrade
from server.storage.tables import (
    audit_head,
    audit_log,
    consent_events,
    consent_head,
    crisis_events,
    crisis_head,
    crisis_steps,
)

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
GENESIS = "0" * 64
OLD_AUDIT = (
    "seq", "at", "actor_type", "actor_id", "actor_role", "action",
    "target_type", "target_id", "outcome", "request_id", "detail",
)  # fmt: skip
OLD_CRISIS = ("seq", "event_id", "step_no", "kind", "actor_type", "actor_id", "at", "payload")


def _old_hash(names: tuple[str, ...], prev_hash: str, fields: dict[str, Any]) -> str:
    values = {}
    for name in names:
        value = fields.get(name)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        values[name] = value
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + text).encode("ascii")).hexdigest()


def _old_columns(table: sa.Table) -> list[sa.Column[Any]]:
    return [c for c in table.c if c.name not in ("mac_version", "mac_key", "column_macs", "mac")]


async def _set_head(conn: AsyncConnection, head: sa.Table, seq: int, digest: str) -> None:
    await conn.execute(sa.update(head).where(head.c.id == 1).values(seq=seq, hash=digest))


async def _write_old_rows(conn: AsyncConnection, keyring: Keyring) -> None:
    program = await catalog.create_program(conn, ProgramIn(name="P", phone="(555) 010-0100"), NOW)
    clinician = await catalog.create_staff(
        conn,
        InviteIn(
            program_id=program["id"], email="c@example.org", display_name="C", role="clinician"
        ),
        "not-a-real-hash",
        NOW,
    )
    patient = await catalog_patients.create_patient(
        conn,
        keyring,
        PatientIn(program_id=program["id"], legal_name="Old Row", display_name="O"),
        NOW,
    )
    appointment = await catalog_schedule.create_appointment(
        conn,
        AppointmentIn(
            program_id=program["id"],
            patient_id=patient["id"],
            clinician_id=clinician["id"],
            starts_at=NOW + dt.timedelta(hours=1),
        ),
        NOW,
    )
    prev = GENESIS
    for seq in range(1, 5):
        fields = {
            "seq": seq, "at": NOW + dt.timedelta(seconds=seq), "actor_type": "staff",
            "actor_id": clinician["id"], "actor_role": "clinician", "action": "patient.phi_read",
            "target_type": "patient", "target_id": patient["id"], "outcome": "ok",
            "request_id": f"r{seq}", "detail": {"n": seq},
        }  # fmt: skip
        digest = _old_hash(OLD_AUDIT, prev, fields)
        await conn.execute(sa.insert(audit_log).values(**fields, prev_hash=prev, hash=digest))
        prev = digest
    await _set_head(conn, audit_head, 4, prev)

    event_id = "00000000-0000-0000-0000-00000000e001"
    await conn.execute(
        sa.insert(crisis_events).values(
            id=event_id, program_id=program["id"], session_id=appointment["session_id"],
            patient_id=patient["id"], trigger="help_button", level="high", state="open",
            raised_at=NOW,
        )
    )  # fmt: skip
    prev = GENESIS
    for seq in range(1, 4):
        payload = json.dumps({"n": seq}, sort_keys=True, separators=(",", ":"))
        fields = {
            "seq": seq, "event_id": event_id, "step_no": seq, "kind": "raised",
            "actor_type": "system", "actor_id": None, "at": NOW,
        }  # fmt: skip
        digest = _old_hash(OLD_CRISIS, prev, fields | {"payload": payload})
        sealed = keyring.seal(payload, context=crisis_timeline.step_context(seq))
        await conn.execute(
            sa.insert(crisis_steps).values(
                **fields, payload_enc=sealed, prev_hash=prev, hash=digest
            )
        )
        prev = digest
    await _set_head(conn, crisis_head, 3, prev)

    prev = GENESIS
    for seq in range(1, 4):
        plain: dict[str, Any] = {name: None for name in consent_ledger.HASHED}
        plain |= {
            "seq": seq, "patient_id": patient["id"], "kind": "telehealth", "event": "consented",
            "template_id": "t", "template_version": seq, "text_sha256": "0" * 64,
            "language": "en", "presented_at": NOW, "consented_at": NOW, "method": "e_signature",
            "signer_role": "patient", "signature": "Old Row", "recorded_at": NOW,
            "context": json.dumps({"user_agent": "test"}, sort_keys=True),
        }  # fmt: skip
        digest = consent_row_hash(prev, plain)
        key_id, signature = keyring.sign(digest.encode("ascii"))
        stored = {k: v for k, v in plain.items() if k not in consent_ledger.SEALED}
        for name in consent_ledger.SEALED:
            stored[f"{name}_enc"] = keyring.seal_optional(
                plain[name], context=consent_ledger.context_for(seq, name)
            )
        await conn.execute(
            sa.insert(consent_events).values(
                **stored, prev_hash=prev, hash=digest, key_id=key_id, signature=signature
            )
        )
        prev = digest
    await _set_head(conn, consent_head, 3, prev)


@pytest.fixture
async def old_database(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[AsyncEngine, Keyring]]:
    keyring, _ = ensure_keyring(tmp_path / "secret.key")
    engine = create_engine(database_url)
    await upgrade(engine, "0012")
    async with engine.begin() as conn:
        await _write_old_rows(conn, keyring)
    try:
        yield engine, keyring
    finally:
        await engine.dispose()


async def _snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    tables = (audit_log, audit_head, crisis_steps, crisis_head, consent_events, consent_head)
    found = {}
    async with engine.connect() as conn:
        for table in tables:
            order = next(iter(table.primary_key.columns))
            rows = await conn.execute(sa.select(*_old_columns(table)).order_by(order))
            found[table.name] = [tuple(row) for row in rows]
    return found


async def test_rows_written_under_the_old_hashes_verify_under_the_keyed_scheme_after_upgrade(
    old_database: tuple[AsyncEngine, Keyring],
) -> None:
    engine, keyring = old_database
    assert await upgrade(engine, keyring=keyring) == "0020"
    async with engine.connect() as conn:
        assert (await audit.verify(conn, keyring)).rows == 4
        assert (await crisis_timeline.verify(conn, keyring)).rows == 3
        assert (await consent_ledger.verify(conn, keyring)).rows == 3
    # Now keyed: a change the old hash could have been recomputed over is caught by name.
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(audit_log).where(audit_log.c.seq == 2).values(actor_type="staffx")
        )
    async with engine.connect() as conn:
        result = await audit.verify(conn, keyring)
    assert (result.broken_at, result.column) == (2, "actor_type")


@pytest.mark.parametrize(
    ("table", "change"),
    [
        (audit_log, {"actor_type": "staffx"}),
        (crisis_steps, {"kind": "signed_off"}),
        (consent_events, {"method": "paper_scanned"}),
    ],
)
async def test_a_database_tampered_before_the_upgrade_is_refused_and_left_unchanged(
    old_database: tuple[AsyncEngine, Keyring], table: sa.Table, change: dict[str, str]
) -> None:
    engine, keyring = old_database
    async with engine.begin() as conn:
        await conn.execute(sa.update(table).where(table.c.seq == 2).values(change))
    before = await _snapshot(engine)
    with pytest.raises(MigrationRefusedError, match=rf"refusing to re-MAC {table.name}: row 2 "):
        await upgrade(engine, keyring=keyring)
    assert await current_revision(engine) == "0012"
    assert await _snapshot(engine) == before


async def test_rows_to_re_mac_without_the_key_file_are_refused(
    old_database: tuple[AsyncEngine, Keyring],
) -> None:
    engine, _ = old_database
    with pytest.raises(MigrationRefusedError, match="no key file"):
        await upgrade(engine)
    assert await current_revision(engine) == "0012"
