"""The consent ledger in storage: append, replay, verify and export signed, chained rows."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.consent import Standing, current_consents, row_hash
from server.phi import Keyring, verify_signature
from server.storage.tables import consent_events, consent_head

GENESIS = "0" * 64
SEALED = ("signature", "context", "reason")
# What a row's hash covers: every recorded field, sealed ones by their plain value.
HASHED = (
    "seq",
    "patient_id",
    "kind",
    "event",
    "template_id",
    "template_version",
    "text_sha256",
    "language",
    "session_id",
    "presented_at",
    "consented_at",
    "method",
    "obtained_by",
    "witness_id",
    "signer_role",
    "signature",
    "context",
    "supersedes",
    "revokes",
    "reason",
    "recorded_by",
    "recorded_at",
)


def context_for(seq: int, field: str) -> str:
    """The encryption context of a sealed ledger field."""
    return f"consent/{seq}/{field}"


async def append(conn: AsyncConnection, keyring: Keyring, **fields: Any) -> int:
    """Append one event inside the caller's transaction; return its seq."""
    # Bumping the head first serialises appends across processes (row or write lock).
    head = (
        await conn.execute(
            consent_head.update()
            .where(consent_head.c.id == 1)
            .values(seq=consent_head.c.seq + 1)
            .returning(consent_head.c.seq, consent_head.c.hash)
        )
    ).one()
    seq = int(head.seq)
    plain = {name: fields.get(name) for name in HASHED} | {"seq": seq}
    if plain["context"] is not None:
        plain["context"] = json.dumps(plain["context"], sort_keys=True)
    digest = row_hash(head.hash, plain)
    key_id, signature = keyring.sign(digest.encode("ascii"))
    stored = {name: value for name, value in plain.items() if name not in SEALED}
    for name in SEALED:
        stored[f"{name}_enc"] = keyring.seal_optional(plain[name], context=context_for(seq, name))
    await conn.execute(
        consent_events.insert().values(
            **stored, prev_hash=head.hash, hash=digest, key_id=key_id, signature=signature
        )
    )
    await conn.execute(consent_head.update().where(consent_head.c.id == 1).values(hash=digest))
    return seq


def _plain(keyring: Keyring, row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    plain = {name: data.get(name) for name in HASHED if name not in SEALED}
    for name in SEALED:
        plain[name] = keyring.open_optional(
            data[f"{name}_enc"], context=context_for(data["seq"], name)
        )
    return plain


async def events_of(
    conn: AsyncConnection, keyring: Keyring, patient_id: str, *, reveal: bool = False
) -> list[dict[str, Any]]:
    """A patient's ledger rows in order; sealed fields opened only when `reveal`."""
    rows = await conn.execute(
        sa.select(consent_events)
        .where(consent_events.c.patient_id == patient_id)
        .order_by(consent_events.c.seq)
    )
    found = []
    for row in rows:
        if reveal:
            record = _plain(keyring, row)
        else:
            record = {name: row._mapping.get(name) for name in HASHED if name not in SEALED}
        record.update(hash=row.hash, prev_hash=row.prev_hash, key_id=row.key_id)
        record["signature_b64"] = row.signature
        found.append(record)
    return found


async def standing(conn: AsyncConnection, keyring: Keyring, patient_id: str) -> dict[str, Standing]:
    """The patient's current consent per kind."""
    return current_consents(await events_of(conn, keyring, patient_id))


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking the whole ledger."""

    rows: int
    broken_at: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def verify(conn: AsyncConnection, keyring: Keyring, batch: int = 500) -> Verification:
    """Check every row's chain link, hash and signature, in order."""
    public = keyring.public_keys()
    expected_prev, expected_seq, rows, last = GENESIS, 1, 0, 0
    while True:
        found = (
            await conn.execute(
                sa.select(consent_events)
                .where(consent_events.c.seq > last)
                .order_by(consent_events.c.seq)
                .limit(batch)
            )
        ).all()
        if not found:
            break
        for row in found:
            if row.seq != expected_seq:
                return Verification(rows, int(row.seq), f"row {expected_seq} is missing")
            if row.prev_hash != expected_prev:
                return Verification(rows, int(row.seq), "link to the previous row is broken")
            plain = _plain(keyring, row)
            if row_hash(row.prev_hash, plain) != row.hash:
                return Verification(rows, int(row.seq), "row contents do not match its hash")
            key = public.get(row.key_id)
            if key is None or not verify_signature(key, row.hash.encode("ascii"), row.signature):
                return Verification(rows, int(row.seq), "signature does not verify")
            expected_prev, expected_seq, rows, last = row.hash, expected_seq + 1, rows + 1, row.seq
    head = (await conn.execute(sa.select(consent_head).where(consent_head.c.id == 1))).one()
    if head.seq != rows or head.hash != expected_prev:
        return Verification(rows, rows + 1, "rows after the last one present were removed")
    return Verification(rows)


async def export(conn: AsyncConnection, keyring: Keyring, patient_id: str) -> dict[str, Any]:
    """A patient's consent history with what a third party needs to check it offline."""
    events = await events_of(conn, keyring, patient_id, reveal=True)
    for event in events:
        for name, value in list(event.items()):
            if isinstance(value, dt.datetime):
                event[name] = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return {
        "patient_id": patient_id,
        "format": "iop-consent-export/1",
        "how_to_verify": (
            "For each event: hash = SHA-256(prev_hash + canonical JSON of the fields listed in "
            "hashed_fields, keys sorted, no spaces, times in UTC with microseconds); then check "
            "the Ed25519 signature (base64) over the ASCII hex hash with public_keys[key_id]."
        ),
        "hashed_fields": list(HASHED),
        "public_keys": keyring.public_keys(),
        "events": events,
    }
