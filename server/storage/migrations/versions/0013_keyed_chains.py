"""keyed chains: every column of the audit, crisis and consent chains under an HMAC

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 15:30:00

The audit trail and the crisis timeline were chained with plain SHA-256 over some of their
columns, which anyone who can write to the database can recompute. This revision adds the
keyed row MAC (server/rowmac.py, column lists version 1) to them and to the consent ledger,
and re-MACs every existing row with the key file's MAC key. It first verifies every chain
under the old scheme and refuses, changing nothing, if one does not hold: a tampered history
must never be blessed with fresh MACs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.engine import Connection

from rooms.consent import row_hash as consent_row_hash
from server import audit
from server.chain import GENESIS, head_values
from server.consent import ledger as consent_ledger
from server.crisis import timeline as crisis_timeline
from server.phi import DecryptionError, Keyring, verify_signature
from server.rowmac import ChainSpec, plain_values, sign_with
from server.storage.migrate import MigrationRefusedError
from server.storage.tables import (
    audit_head,
    audit_log,
    consent_events,
    consent_head,
    crisis_head,
    crisis_steps,
)

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

MAC_VERSION = 1
ROW_MAC_COLUMNS = ("mac_version", "mac_key", "column_macs")

# The old scheme, frozen as it was written: SHA-256 over the previous hash and canonical
# JSON of these fields (crisis payloads by their plain value).
OLD_AUDIT_FIELDS = (
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
OLD_CRISIS_FIELDS = (
    "seq",
    "event_id",
    "step_no",
    "kind",
    "actor_type",
    "actor_id",
    "at",
    "payload",
)


def _old_hash(fields_list: tuple[str, ...], prev_hash: str, fields: dict[str, Any]) -> str:
    values = {}
    for name in fields_list:
        value = fields.get(name)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        values[name] = value
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256((prev_hash + text).encode("ascii")).hexdigest()


def _old_columns(spec: ChainSpec) -> list[sa.Column[Any]]:
    # Exactly the columns that exist at this revision, whatever later revisions add.
    names = dict.fromkeys((*spec.versions[MAC_VERSION], spec.digest))
    return [spec.table.c[name] for name in names]


def _rows(bind: Connection, spec: ChainSpec) -> Iterator[Any]:
    table = spec.table
    last = 0
    while True:
        found = bind.execute(
            sa.select(*_old_columns(spec))
            .where(table.c.seq > last)
            .order_by(table.c.seq)
            .limit(500)
        ).all()
        if not found:
            return
        yield from found
        last = found[-1].seq


def _open(keyring: Keyring, stored: str | None, context_text: str) -> str | None:
    return None if stored is None else keyring.open(stored, context=context_text)


def _old_audit(keyring: Keyring | None, row: Any) -> str:
    return _old_hash(OLD_AUDIT_FIELDS, row.prev_hash, dict(row._mapping))


def _old_crisis(keyring: Keyring | None, row: Any) -> str:
    assert keyring is not None
    payload = keyring.open(row.payload_enc, context=crisis_timeline.step_context(row.seq))
    return _old_hash(OLD_CRISIS_FIELDS, row.prev_hash, dict(row._mapping) | {"payload": payload})


def _old_consent(keyring: Keyring | None, row: Any) -> str:
    assert keyring is not None
    data = dict(row._mapping)
    plain = {n: data.get(n) for n in consent_ledger.HASHED if n not in consent_ledger.SEALED}
    for name in consent_ledger.SEALED:
        plain[name] = _open(keyring, data[f"{name}_enc"], consent_ledger.context_for(row.seq, name))
    digest = consent_row_hash(row.prev_hash, plain)
    public = keyring.public_keys().get(row.key_id)
    if public is None or not verify_signature(public, row.hash.encode("ascii"), row.signature):
        return ""
    return digest


CHAINS: tuple[tuple[ChainSpec, Callable[[Keyring | None, Any], str]], ...] = (
    (audit.CHAIN, _old_audit),
    (crisis_timeline.CHAIN, _old_crisis),
    (consent_ledger.CHAIN, _old_consent),
)


def _verify_old(bind: Connection, keyring: Keyring | None) -> None:
    for spec, old_hash in CHAINS:
        expected_prev, expected_seq = GENESIS, 1
        for row in _rows(bind, spec):
            if keyring is None:
                raise MigrationRefusedError(
                    f"{spec.name} has rows to re-MAC and no key file was given: "
                    "run `python -m server migrate`"
                )
            if row.seq != expected_seq:
                raise _refused(spec, expected_seq, "row is missing")
            if row.prev_hash != expected_prev:
                raise _refused(spec, row.seq, "link to the previous row is broken")
            try:
                digest = old_hash(keyring, row)
            except DecryptionError:
                digest = ""
            if digest != row.hash:
                raise _refused(spec, row.seq, "row does not match its hash")
            expected_prev, expected_seq = row.hash, expected_seq + 1
        tip = bind.execute(sa.select(spec.head.c.seq, spec.head.c.hash)).first()
        if tip is not None and (tip.seq != expected_seq - 1 or tip.hash != expected_prev):
            raise _refused(spec, expected_seq, "rows after the last one present were removed")


def _refused(spec: ChainSpec, seq: int, reason: str) -> MigrationRefusedError:
    return MigrationRefusedError(
        f"refusing to re-MAC {spec.name}: row {seq} fails the old hash check ({reason}); "
        "the database is left unchanged, restore it from a backup or investigate"
    )


def _remac(bind: Connection, keyring: Keyring) -> None:
    key_id, key = keyring.current_mac_key()
    for spec, _ in CHAINS:
        table = spec.table
        prev, last_seq = GENESIS, 0
        # Audit and crisis rows link by their MAC, so each row's link changes with the one
        # before it; the consent ledger keeps its public hash chain and gains a MAC beside it.
        relinks = spec.mac_column == spec.digest
        for row in _rows(bind, spec):
            values = plain_values(spec, keyring, row)
            if relinks:
                values[spec.link] = prev
            macs = sign_with(spec, key_id, key, MAC_VERSION, values)
            update = dict(macs)
            if relinks:
                update[spec.link] = prev
            bind.execute(table.update().where(table.c.seq == row.seq).values(update))
            prev = macs[spec.mac_column] if relinks else values[spec.digest]
            last_seq = row.seq
        bind.execute(
            spec.head.update()
            .where(spec.head.c.id == 1)
            .values(head_values(spec, keyring, last_seq, prev))
        )


def upgrade() -> None:
    bind = op.get_bind()
    keyring = context.config.attributes.get("keyring")
    # Reads only, before any schema change: a refusal leaves the database as it was.
    _verify_old(bind, keyring)
    for table in (audit_log, crisis_steps, consent_events):
        with op.batch_alter_table(table.name) as batch:
            batch.add_column(sa.Column("mac_version", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("mac_key", sa.String(16), nullable=True))
            batch.add_column(sa.Column("column_macs", sa.Text(), nullable=True))
            if table is consent_events:
                batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
    for head in (audit_head, crisis_head, consent_head):
        with op.batch_alter_table(head.name) as batch:
            batch.add_column(sa.Column("mac_key", sa.String(16), nullable=True))
            batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
    if keyring is not None:
        _remac(bind, keyring)
    # Without a key (tests that build a schema only) the chains are empty, checked above;
    # their heads get a MAC at the first append, and until then do not verify.


def downgrade() -> None:
    bind = op.get_bind()
    keyring = context.config.attributes.get("keyring")
    # Back to the old unkeyed hashes (the old code verifies those), then drop the MACs.
    for spec, old_hash in CHAINS[:2]:
        prev = GENESIS
        for row in _rows(bind, spec):
            if keyring is None:
                raise MigrationRefusedError(f"{spec.name} has rows to re-hash and no key file")
            fields = dict(row._mapping) | {"prev_hash": prev}
            digest = old_hash(keyring, _Row(fields))
            bind.execute(
                spec.table.update()
                .where(spec.table.c.seq == row.seq)
                .values(prev_hash=prev, hash=digest)
            )
            prev = digest
        bind.execute(spec.head.update().where(spec.head.c.id == 1).values(hash=prev))
    for table in (audit_log, crisis_steps, consent_events):
        with op.batch_alter_table(table.name) as batch:
            if table is consent_events:
                batch.drop_column("mac")
            for name in reversed(ROW_MAC_COLUMNS):
                batch.drop_column(name)
    for head in (audit_head, crisis_head, consent_head):
        with op.batch_alter_table(head.name) as batch:
            batch.drop_column("mac")
            batch.drop_column("mac_key")


class _Row:
    """A row-like view of a dict, for the old hash functions in a downgrade."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self._mapping = fields
        for name, value in fields.items():
            setattr(self, name, value)
