"""The audit trail: append-only rows, each hash-chained to the one before it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server import chain
from server.storage.tables import audit_head, audit_log

GENESIS = chain.GENESIS
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
    seq, prev_hash = await chain.bump_head(conn, audit_head)
    fields: dict[str, Any] = {
        "seq": seq,
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
    digest = row_hash(prev_hash, fields)
    await conn.execute(audit_log.insert().values(**fields, prev_hash=prev_hash, hash=digest))
    await chain.set_head(conn, audit_head, digest)
    return seq


async def verify(conn: AsyncConnection) -> chain.Verification:
    """Walk the whole chain and report the first row that does not hold."""
    return await chain.walk(
        conn, audit_log, audit_head, lambda row: row_hash(row.prev_hash, dict(row._mapping))
    )


async def rows_for(conn: AsyncConnection, target_type: str, target_id: str) -> list[dict[str, Any]]:
    """Audit rows about one record, oldest first."""
    found = await conn.execute(
        sa.select(audit_log)
        .where(audit_log.c.target_type == target_type, audit_log.c.target_id == target_id)
        .order_by(audit_log.c.seq)
    )
    return [dict(row._mapping) for row in found]
