"""Keyed chains in storage: appending under the head row's lock, and walking to verify."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.phi import Keyring
from server.rowmac import ChainSpec, head_mac, mismatch

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of walking a chain: the first row that does not hold, and why."""

    rows: int
    broken_at: int | None = None
    reason: str | None = None
    table: str = ""
    column: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def describe(self) -> str:
        """One line naming the table, row and column; never a value."""
        if self.ok:
            return f"{self.table}: {self.rows} rows intact"
        return f"{self.table} row {self.broken_at}: {self.reason}"


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


def head_values(spec: ChainSpec, keyring: Keyring, seq: int, digest: str) -> dict[str, Any]:
    """The head row's columns for a chain whose newest row is `seq` with `digest`."""
    key_id, key = keyring.current_mac_key()
    return {"hash": digest, "mac_key": key_id, "mac": head_mac(spec, key, key_id, seq, digest)}


async def set_head(
    conn: AsyncConnection, spec: ChainSpec, keyring: Keyring, seq: int, digest: str
) -> None:
    """Record the newest row's seq and hash as the chain's head, keyed."""
    head = spec.head
    await conn.execute(
        head.update().where(head.c.id == 1).values(head_values(spec, keyring, seq, digest))
    )


async def walk(
    conn: AsyncConnection,
    spec: ChainSpec,
    keyring: Keyring,
    extra: Callable[[Any], str | None] | None = None,
    batch: int = 1000,
) -> Verification:
    """Check every row's MACs, sequence and link in order (and `extra`, e.g. a signature)."""
    table, name = spec.table, spec.name
    expected_prev, expected_seq, rows, last = GENESIS, 1, 0, 0

    def broken(at: int, reason: str, column: str | None = None) -> Verification:
        return Verification(rows, at, reason, name, column)

    def changed(at: int, column: str) -> Verification:
        return broken(at, f"column {column} does not match", column)

    while True:
        found = (
            await conn.execute(
                sa.select(table).where(table.c.seq > last).order_by(table.c.seq).limit(batch)
            )
        ).all()
        if not found:
            break
        for row in found:
            column = mismatch(spec, keyring, row)
            if column is not None:
                return changed(int(row.seq), column)
            if row.seq != expected_seq or getattr(row, spec.link) != expected_prev:
                # The row here holds on its own: the one that belongs here was removed,
                # renumbered or moved. Its successor link says which.
                moved = (
                    await conn.execute(
                        sa.select(table)
                        .where(table.c[spec.link] == expected_prev, table.c.seq != row.seq)
                        .limit(1)
                    )
                ).first()
                if moved is None:
                    return broken(expected_seq, "row is missing")
                column = mismatch(spec, keyring, moved)
                if column is not None:
                    return changed(expected_seq, column)
                return broken(expected_seq, f"row is out of order (stored as {moved.seq})")
            problem = extra(row) if extra is not None else None
            if problem is not None:
                return broken(int(row.seq), problem)
            expected_prev = getattr(row, spec.digest)
            expected_seq, rows, last = expected_seq + 1, rows + 1, row.seq
    tip = (await conn.execute(sa.select(spec.head).where(spec.head.c.id == 1))).one()
    key = keyring.mac_key(str(tip.mac_key)) if tip.mac_key is not None else None
    if key is None or tip.mac != head_mac(spec, key, str(tip.mac_key), int(tip.seq), tip.hash):
        return broken(rows + 1, "the chain head does not match its MAC", "mac")
    if tip.seq != rows or tip.hash != expected_prev:
        return broken(rows + 1, "rows after the last one present were removed")
    return Verification(rows, table=name)
