"""Hash chains in storage: appending under the head row's lock, and walking to verify."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of walking a chain."""

    rows: int
    broken_at: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def bump_head(conn: AsyncConnection, head: sa.Table) -> tuple[int, str]:
    """Take the next sequence number and the previous hash, holding the head's lock.

    Updating the one head row first takes its row lock (PostgreSQL) or the write lock
    (SQLite), so appends from any number of processes line up one after another.
    """
    row = (
        await conn.execute(
            head.update()
            .where(head.c.id == 1)
            .values(seq=head.c.seq + 1)
            .returning(head.c.seq, head.c.hash)
        )
    ).one()
    return int(row.seq), str(row.hash)


async def set_head(conn: AsyncConnection, head: sa.Table, digest: str) -> None:
    """Record the newest row's hash as the chain's head."""
    await conn.execute(head.update().where(head.c.id == 1).values(hash=digest))


async def walk(
    conn: AsyncConnection,
    table: sa.Table,
    head: sa.Table,
    row_hash: Callable[[Any], str],
    extra: Callable[[Any], str | None] | None = None,
    batch: int = 1000,
) -> Verification:
    """Check every row's sequence, link and hash in order (and `extra`, e.g. a signature)."""
    expected_prev, expected_seq, rows, last = GENESIS, 1, 0, 0
    while True:
        found = (
            await conn.execute(
                sa.select(table).where(table.c.seq > last).order_by(table.c.seq).limit(batch)
            )
        ).all()
        if not found:
            break
        for row in found:
            if row.seq != expected_seq:
                return Verification(rows, int(row.seq), f"row {expected_seq} is missing")
            if row.prev_hash != expected_prev:
                return Verification(rows, int(row.seq), "link to the previous row is broken")
            if row_hash(row) != row.hash:
                return Verification(rows, int(row.seq), "row contents do not match its hash")
            problem = extra(row) if extra is not None else None
            if problem is not None:
                return Verification(rows, int(row.seq), problem)
            expected_prev, expected_seq, rows, last = row.hash, expected_seq + 1, rows + 1, row.seq
    tip = (await conn.execute(sa.select(head).where(head.c.id == 1))).one()
    if tip.seq != rows or tip.hash != expected_prev:
        return Verification(rows, rows + 1, "rows after the last one present were removed")
    return Verification(rows)
