"""The consent ledger in storage: append, replay, verify and export signed, chained rows."""

from __future__ import annotations

import datetime as dt
import json
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rooms.consent import Standing, current_consents, row_hash
from server import chain
from server.phi import Keyring, verify_signature
from server.rowmac import ChainSpec, sign
from server.storage.tables import consent_events, consent_head

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


# The keyed MAC covers every stored column, the public hash and signature included;
# sealed fields by their plain value so re-encryption leaves it intact.
CHAIN = ChainSpec(
    consent_events,
    consent_head,
    versions={
        1: (
            "prev_hash",
            *(f"{name}_enc" if name in SEALED else name for name in HASHED),
            "hash",
            "key_id",
            "signature",
        ),
    },
    mac_column="mac",
    sealed={f"{name}_enc": partial(context_for, field=name) for name in SEALED},
)


async def append(conn: AsyncConnection, keyring: Keyring, **fields: Any) -> int:
    """Append one event inside the caller's transaction; return its seq."""
    seq, prev_hash = await chain.bump_head(conn, consent_head)
    plain = {name: fields.get(name) for name in HASHED} | {"seq": seq}
    if plain["context"] is not None:
        plain["context"] = json.dumps(plain["context"], sort_keys=True)
    digest = row_hash(prev_hash, plain)
    key_id, signature = keyring.sign(digest.encode("ascii"))
    stored = {name: value for name, value in plain.items() if name not in SEALED}
    for name in SEALED:
        stored[f"{name}_enc"] = keyring.seal_optional(plain[name], context=context_for(seq, name))
    stored |= {"prev_hash": prev_hash, "hash": digest, "key_id": key_id, "signature": signature}
    macs = sign(CHAIN, keyring, stored | {f"{name}_enc": plain[name] for name in SEALED})
    await conn.execute(consent_events.insert().values(**stored, **macs))
    await chain.set_head(conn, CHAIN, keyring, seq, digest)
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


async def verify(conn: AsyncConnection, keyring: Keyring) -> chain.Verification:
    """Check every row's MACs, chain link, public hash and Ed25519 signature, in order."""
    public = keyring.public_keys()

    def signature_problem(row: Any) -> str | None:
        key = public.get(row.key_id)
        if key is None or not verify_signature(key, row.hash.encode("ascii"), row.signature):
            return "signature does not verify"
        return None

    def public_problem(row: Any) -> str | None:
        # The keyed MAC already covers every column; the public hash and signature are what
        # an offline check relies on, so they are checked as such too.
        if row_hash(row.prev_hash, _plain(keyring, row)) != row.hash:
            return "row contents do not match its hash"
        return signature_problem(row)

    return await chain.walk(conn, CHAIN, keyring, public_problem)


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
