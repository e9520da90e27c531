"""The audit trail: append-only rows, each MAC-chained to the one before it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server import chain
from server.phi import Keyring
from server.rowmac import ChainSpec, sign
from server.storage.tables import audit_head, audit_log

GENESIS = chain.GENESIS
# Every stored column, by column-list version (server/rowmac.py): a migration that adds a
# column adds a version here and leaves the old ones, so rows written before still verify.
CHAIN = ChainSpec(
    audit_log,
    audit_head,
    versions={
        1: (
            "prev_hash",
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
        ),
    },
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something: a staff member, a patient (through a join link) or the system."""

    type: str
    id: str | None = None
    role: str | None = None


SYSTEM = Actor("system")


async def record(
    conn: AsyncConnection,
    keyring: Keyring,
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
        "prev_hash": prev_hash,
    }
    fields |= sign(CHAIN, keyring, fields)
    await conn.execute(audit_log.insert().values(**fields))
    await chain.set_head(conn, CHAIN, keyring, seq, fields["hash"])
    return seq


async def verify(conn: AsyncConnection, keyring: Keyring) -> chain.Verification:
    """Walk the whole chain and report the first row, and column, that does not hold."""
    return await chain.walk(conn, CHAIN, keyring)


async def rows_for(conn: AsyncConnection, target_type: str, target_id: str) -> list[dict[str, Any]]:
    """Audit rows about one record, oldest first."""
    found = await conn.execute(
        sa.select(audit_log)
        .where(audit_log.c.target_type == target_type, audit_log.c.target_id == target_id)
        .order_by(audit_log.c.seq)
    )
    return [dict(row._mapping) for row in found]
