"""The audit trail: append-only rows, each hash-chained to the one before it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.storage.tables import audit_head, audit_log

GENESIS = "0" * 64
HASHED_FIELDS = (
    "seq",
    "at",
    "actor_type",
    "actor_id",
    "actor_role",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "request_id",
    "detail",
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a staff member, a patient (through a join link) or the system."""

    type: str
    id: str | None = None
    role: str | None = None


SYSTEM = Actor("system")


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of walking the chain."""

    rows: int
    broken_at: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def _canonical(fields: dict[str, Any]) -> str:
    values = {}
    for name in HASHED_FIELDS:
        value = fields.get(name)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        values[name] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the row's canonical serialization."""
    return hashlib.sha256((prev_hash + _canonical(fields)).encode("ascii")).hexdigest()


async def record(
    conn: AsyncConnection,
    *,
    actor: Actor,
    action: str,
    now: dt.datetime,
    target_type: str | None = None,
    target_id: str | None = None,
    outcome: str = "ok",
    request_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one row inside the caller's transaction; `detail` holds ids, never PHI."""
    # Bumping the head first takes its row lock (PostgreSQL) or the write lock (SQLite),
    # so concurrent appends from any process line up one after another.
    head = (
        await conn.execute(
            audit_head.update()
            .where(audit_head.c.id == 1)
            .values(seq=audit_head.c.seq + 1)
            .returning(audit_head.c.seq, audit_head.c.hash)
        )
    ).one()
    fields: dict[str, Any] = {
        "seq": head.seq,
        "at": now.astimezone(dt.UTC),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "actor_role": actor.role,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "outcome": outcome,
        "request_id": request_id,
        "detail": detail,
    }
    digest = row_hash(head.hash, fields)
    await conn.execute(audit_log.insert().values(**fields, prev_hash=head.hash, hash=digest))
    await conn.execute(audit_head.update().where(audit_head.c.id == 1).values(hash=digest))
    return int(head.seq)


async def verify(conn: AsyncConnection, batch: int = 1000) -> Verification:
    """Walk the whole chain and report the first row that does not hold."""
    expected_prev = GENESIS
    expected_seq = 1
    rows = 0
    last_seq = 0
    while True:
        found = (
            await conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.seq > last_seq)
                .order_by(audit_log.c.seq)
                .limit(batch)
            )
        ).all()
        if not found:
            break
        for row in found:
            fields = dict(row._mapping)
            if row.seq != expected_seq:
                return Verification(rows, int(row.seq), f"row {expected_seq} is missing")
            if row.prev_hash != expected_prev:
                return Verification(rows, int(row.seq), "link to the previous row is broken")
            if row_hash(row.prev_hash, fields) != row.hash:
                return Verification(rows, int(row.seq), "row contents do not match its hash")
            expected_prev = row.hash
            expected_seq += 1
            rows += 1
            last_seq = int(row.seq)
    head = (await conn.execute(sa.select(audit_head).where(audit_head.c.id == 1))).one()
    if head.seq != rows or head.hash != expected_prev:
        return Verification(rows, rows + 1, "rows after the last one present were removed")
    return Verification(rows)


async def rows_for(conn: AsyncConnection, target_type: str, target_id: str) -> list[dict[str, Any]]:
    """Audit rows about one record, oldest first."""
    found = await conn.execute(
        sa.select(audit_log)
        .where(audit_log.c.target_type == target_type, audit_log.c.target_id == target_id)
        .order_by(audit_log.c.seq)
    )
    return [dict(row._mapping) for row in found]
