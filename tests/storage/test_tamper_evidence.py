"""The keyed chains catch a plain SQL change to any stored column of any row, on both engines.

Rows are written through the application (the demo seed, audit records, a crisis raise,
consent events); then, column by column, one row is changed with a plain UPDATE, as a
database writer without the key file could, and the verifier must name that row and column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crisis.escalation import Concern
from server import audit, chain
from server.consent import ledger as consent_ledger
from server.crisis import store as crisis_store
from server.crisis import timeline as crisis_timeline
from server.demo import seed_demo
from server.keyrotation import reencrypt
from server.phi import Keyring, add_key, add_mac_key, ensure_keyring, load_keyring
from server.rowmac import MAC_COLUMNS, ChainSpec
from server.storage.engine import create_engine
from server.storage.migrate import upgrade
from server.storage.tables import audit_log, crisis_events

NOW = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)
ACTOR = audit.Actor("staff", "00000000-0000-0000-0000-000000000001", "admin")


@dataclass
class Written:
    engine: AsyncEngine
    keyring: Keyring
    # Other existing ids, so a changed reference still satisfies its foreign key.
    others: dict[str, str]


@pytest.fixture
async def written(database_url: str, tmp_path: Path) -> AsyncIterator[Written]:
    keyring, _ = ensure_keyring(tmp_path / "secret.key")
    engine = create_engine(database_url)
    await upgrade(engine, keyring=keyring)
    demo = await seed_demo(engine, keyring, "https://iop.test", NOW, 3)
    first, second = (p["id"] for p in demo["groups"][0]["patients"][:2])
    session_id = demo["appointments"][0]["session_id"]
    events = []
    async with engine.begin() as conn:
        for n in range(4):
            await audit.record(
                conn,
                keyring,
                actor=ACTOR,
                action="patient.phi_read",
                now=NOW + dt.timedelta(seconds=n),
                target_type="patient",
                target_id=first,
                request_id=f"r{n}",
                detail={"n": n},
            )
        for patient_id in (first, second):
            concern = Concern(patient_id, session_id, "help_button", "high", "help", NOW)
            events.append(await crisis_store.open_event(conn, keyring, concern))
        for n, kind in enumerate(("telehealth", "emergency_plan", "telehealth")):
            await consent_ledger.append(
                conn,
                keyring,
                patient_id=first,
                kind=kind,
                event="consented",
                template_id="t",
                template_version=n + 1,
                text_sha256="0" * 64,
                language="en",
                session_id=session_id,
                presented_at=NOW,
                consented_at=NOW + dt.timedelta(minutes=n),
                method="e_signature",
                obtained_by=ACTOR.id,
                witness_id=ACTOR.id,
                signer_role="patient",
                signature="Typed Name",
                context={"user_agent": "test", "address": "127.0.0.1"},
                supersedes=1 if n == 2 else None,
                recorded_by=ACTOR.id,
                recorded_at=NOW,
            )
        await consent_ledger.append(
            conn,
            keyring,
            patient_id=first,
            kind="emergency_plan",
            event="revoked",
            revokes=2,
            reason="moving away",
            recorded_at=NOW,
        )
        # An event with no steps of its own, for a step moved to another event to land in.
        header = (
            await conn.execute(sa.select(crisis_events).where(crisis_events.c.id == events[0]))
        ).one()
        spare = str(uuid.uuid4())
        await conn.execute(
            crisis_events.insert().values(dict(header._mapping) | {"id": spare, "state": "closed"})
        )
    try:
        yield Written(engine, keyring, {"patient_id": second, "event_id": spare})
    finally:
        await engine.dispose()


Verify = Callable[[AsyncConnection, Keyring], Awaitable[chain.Verification]]
CHAINS: dict[str, tuple[ChainSpec, Verify]] = {
    "audit_log": (audit.CHAIN, audit.verify),
    "crisis_steps": (crisis_timeline.CHAIN, crisis_timeline.verify),
    "consent_events": (consent_ledger.CHAIN, consent_ledger.verify),
}
ROW = 2


async def _verify(written: Written, name: str) -> chain.Verification:
    async with written.engine.connect() as conn:
        return await CHAINS[name][1](conn, written.keyring)


def _different(column: sa.Column[Any], value: Any, others: dict[str, str]) -> Any:
    if column.name in others:
        return others[column.name]
    if column.name == "seq":
        return 10_000
    if value is None:
        if isinstance(column.type, sa.JSON):
            return {"x": 1}
        if isinstance(column.type, sa.Integer):
            return 7
        if isinstance(column.type, sa.String) and not isinstance(column.type, sa.Text):
            return "x"
        if isinstance(column.type, sa.Text):
            return "x"
        return NOW
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1000
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(seconds=1)
    if isinstance(value, dict):
        return {**value, "x": 1}
    # Same length, last character changed: fits every column width.
    return value[:-1] + ("0" if value[-1] != "0" else "1")


def _stored_columns(spec: ChainSpec) -> list[str]:
    return [column.name for column in spec.table.c]


def test_every_stored_column_is_covered_by_the_current_column_list() -> None:
    for spec, _ in CHAINS.values():
        covered = {*spec.versions[spec.version], *MAC_COLUMNS, spec.mac_column}
        assert set(_stored_columns(spec)) == covered, spec.name


@pytest.mark.parametrize("name", list(CHAINS))
async def test_changing_any_column_of_a_row_is_caught_naming_the_row_and_column(
    written: Written, name: str
) -> None:
    spec = CHAINS[name][0]
    table = spec.table
    assert (await _verify(written, name)).ok
    async with written.engine.connect() as conn:
        original = (await conn.execute(sa.select(table).where(table.c.seq == ROW))).one()
    for column in table.c:
        value = getattr(original, column.name)
        changed = _different(column, value, written.others)
        async with written.engine.begin() as conn:
            await conn.execute(table.update().where(table.c.seq == ROW).values({column: changed}))
        result = await _verify(written, name)
        assert (result.broken_at, result.column) == (ROW, column.name), result
        assert result.describe().startswith(f"{name} row {ROW}: column {column.name}")
        where = table.c.seq == (changed if column.name == "seq" else ROW)
        async with written.engine.begin() as conn:
            await conn.execute(table.update().where(where).values({column: value}))
        assert (await _verify(written, name)).ok, column.name


@pytest.mark.parametrize("name", list(CHAINS))
async def test_a_deleted_row_is_caught(written: Written, name: str) -> None:
    table = CHAINS[name][0].table
    async with written.engine.begin() as conn:
        await conn.execute(table.delete().where(table.c.seq == ROW))
    result = await _verify(written, name)
    assert (result.broken_at, result.reason) == (ROW, "row is missing")


@pytest.mark.parametrize("name", list(CHAINS))
async def test_two_rows_swapped_in_order_are_caught(written: Written, name: str) -> None:
    table = CHAINS[name][0].table
    async with written.engine.begin() as conn:
        for old, new in ((ROW, 10_000), (ROW + 1, ROW), (10_000, ROW + 1)):
            await conn.execute(table.update().where(table.c.seq == old).values(seq=new))
    result = await _verify(written, name)
    assert (result.broken_at, result.column) == (ROW, "seq")


@pytest.mark.parametrize("name", list(CHAINS))
async def test_a_row_appended_without_the_key_is_caught(written: Written, name: str) -> None:
    """A writer copies the last row, links it, hashes it without a key and moves the head."""
    spec = CHAINS[name][0]
    table, head = spec.table, spec.head
    async with written.engine.begin() as conn:
        last = (await conn.execute(sa.select(table).order_by(table.c.seq.desc()).limit(1))).one()
        forged = dict(last._mapping)
        seq = last.seq + 1
        forged |= {"seq": seq, "prev_hash": getattr(last, spec.digest)}
        if "step_no" in forged:
            forged["step_no"] += 1
        forged[spec.mac_column] = hashlib.sha256(f"{forged}".encode()).hexdigest()
        await conn.execute(table.insert().values(forged))
        await conn.execute(head.update().values(seq=seq, hash=forged[spec.digest]))
    result = await _verify(written, name)
    assert result.broken_at == seq and not result.ok


@pytest.mark.parametrize("name", list(CHAINS))
async def test_removing_the_last_rows_and_moving_the_head_back_is_caught(
    written: Written, name: str
) -> None:
    spec = CHAINS[name][0]
    table, head = spec.table, spec.head
    async with written.engine.begin() as conn:
        count = await conn.scalar(sa.select(sa.func.count()).select_from(table))
        tail = (await conn.execute(sa.select(table).where(table.c.seq == count - 1))).one()
        await conn.execute(table.delete().where(table.c.seq == count))
        await conn.execute(head.update().values(seq=count - 1, hash=getattr(tail, spec.digest)))
    result = await _verify(written, name)
    assert (result.broken_at, result.column) == (count, "mac")


async def test_after_a_key_rotation_new_rows_use_the_new_mac_key_and_old_rows_still_verify(
    written: Written, tmp_path: Path
) -> None:
    key_file = tmp_path / "secret.key"
    assert add_mac_key(key_file) == "m2"
    add_key(key_file)
    rotated = load_keyring(key_file)
    # Sealed payloads and consent fields are re-encrypted; their MACs cover the plain values.
    assert await reencrypt(written.engine, rotated) > 0
    async with written.engine.begin() as conn:
        seq = await audit.record(conn, rotated, actor=ACTOR, action="keys.rotated", now=NOW)
        used = await conn.scalar(sa.select(audit_log.c.mac_key).where(audit_log.c.seq == seq))
    assert used == "m2"
    async with written.engine.connect() as conn:
        for _, verify in CHAINS.values():
            assert (await verify(conn, rotated)).ok


@pytest.mark.parametrize("name", list(CHAINS))
async def test_emptying_a_chain_and_resetting_its_head_is_caught(
    written: Written, name: str
) -> None:
    spec = CHAINS[name][0]
    async with written.engine.begin() as conn:
        await conn.execute(spec.table.delete())
        await conn.execute(spec.head.update().values(seq=0, hash=chain.GENESIS, mac=None))
    result = await _verify(written, name)
    assert (result.broken_at, result.column) == (1, "mac")
