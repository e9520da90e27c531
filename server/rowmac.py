"""Keyed row MACs for the record chains: a canonical encoding of every column, HMAC-SHA256.

Each chained row stores, besides its own columns:
- `mac_version`: which column list (per table, below in each owner's `ChainSpec`) it was
  MACed under, so a migration that adds a column adds a version and old rows still verify;
- `mac_key`: the id of the key-file MAC key used, so a rotation adds a key and old rows
  keep verifying under theirs;
- `column_macs`: a JSON list, one HMAC per listed column, each over that column's
  type-tagged, length-prefixed value and the row's link to the previous row;
- the row MAC (`hash`, or `mac` where `hash` is the consent ledger's public hash): an HMAC
  over the table, version, key id and the whole `column_macs` vector.

The row MAC decides; the column MACs only say which column changed. A column MAC does not
weaken the row MAC: forging either needs the key. Binding column MACs to the row's link
keeps equal values in different rows (a typed name, a payload) from having equal MACs.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from server.phi import DecryptionError, Keyring
from server.storage.tables import UTCDateTime

MAC_COLUMNS = ("mac_version", "mac_key", "column_macs")
# Stands in for a sealed value that no longer opens: it encodes unlike any real value.
UNREADABLE = object()


class RowMacError(Exception):
    """A row cannot be MACed: no MAC key in the key file, or an unknown column list."""


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """One chained table: its column lists by version and where its MACs are kept."""

    table: sa.Table
    head: sa.Table
    versions: Mapping[int, tuple[str, ...]]
    mac_column: str = "hash"
    # Sealed columns are MACed by their plain value (rotation re-encrypts them), opened
    # with the context their row's seq gives.
    sealed: Mapping[str, Callable[[int], str]] = field(default_factory=dict)
    link: str = "prev_hash"
    digest: str = "hash"

    @property
    def version(self) -> int:
        """The column list new rows are MACed under."""
        return max(self.versions)

    @property
    def name(self) -> str:
        return str(self.table.name)


def _frame(tag: bytes, body: bytes) -> bytes:
    return tag + len(body).to_bytes(8, "big") + body


def encode(value: Any, type_: sa.types.TypeEngine[Any] | None = None) -> bytes:
    """One value, type-tagged and length-prefixed; NULL is distinct from empty."""
    if value is None:
        return _frame(b"N", b"")
    if type(value) is str and (type_ is None or isinstance(type_, sa.String)):
        return _frame(b"S", value.encode("utf-8"))  # the common case, first
    if value is UNREADABLE:
        return _frame(b"!", b"")
    if isinstance(type_, sa.JSON):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return _frame(b"J", text.encode("utf-8"))
    if isinstance(type_, UTCDateTime | sa.DateTime) or isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a chained row")
        stamp = value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        return _frame(b"T", stamp.encode("ascii"))
    if isinstance(type_, sa.Boolean) or isinstance(value, bool):
        return _frame(b"B", b"1" if value else b"0")
    if isinstance(type_, sa.Integer) or isinstance(value, int):
        return _frame(b"I", str(int(value)).encode("ascii"))
    if isinstance(type_, sa.String) or isinstance(value, str):
        return _frame(b"S", str(value).encode("utf-8"))
    if isinstance(value, bytes):
        return _frame(b"Y", value)
    raise TypeError(f"cannot encode a {type(value).__name__} in a chained row")


def _header(kind: bytes, spec: ChainSpec, version: int, key_id: str) -> bytes:
    return _frame(kind, b"") + encode(spec.name) + encode(version) + encode(key_id)


def column_macs(
    spec: ChainSpec, key: bytes, key_id: str, version: int, values: Mapping[str, Any]
) -> list[str]:
    """One MAC per listed column, over its name, value and the row's link."""
    columns = spec.versions[version]
    prefix = _header(b"c", spec, version, key_id) + encode(values.get(spec.link))
    found = []
    for name in columns:
        type_ = spec.table.c[name].type if name not in spec.sealed else sa.Text()
        message = prefix + encode(name) + encode(values.get(name), type_)
        found.append(hmac.digest(key, message, "sha256").hex())
    return found


def row_mac(spec: ChainSpec, key: bytes, key_id: str, version: int, macs: Sequence[str]) -> str:
    """The row MAC over the table, version, key id and every column MAC."""
    message = _header(b"r", spec, version, key_id) + b"".join(encode(m) for m in macs)
    return hmac.digest(key, message, "sha256").hex()


def sign(spec: ChainSpec, keyring: Keyring, values: Mapping[str, Any]) -> dict[str, Any]:
    """The MAC columns for a new row (`values` holds sealed columns' plain values)."""
    if not keyring.mac_keys:
        raise RowMacError("the key file has no MAC key")
    key_id, key = keyring.current_mac_key()
    return sign_with(spec, key_id, key, spec.version, values)


def sign_with(
    spec: ChainSpec, key_id: str, key: bytes, version: int, values: Mapping[str, Any]
) -> dict[str, Any]:
    """`sign` with a given key and column list (the migration pins version 1)."""
    if version not in spec.versions:
        raise RowMacError(f"{spec.name} has no column list version {version}")
    macs = column_macs(spec, key, key_id, version, values)
    return {
        "mac_version": version,
        "mac_key": key_id,
        "column_macs": json.dumps(macs, separators=(",", ":")),
        spec.mac_column: row_mac(spec, key, key_id, version, macs),
    }


def head_mac(spec: ChainSpec, key: bytes, key_id: str, seq: int, digest: str) -> str:
    """The chain head's MAC: a writer without the key cannot move the head back."""
    message = _header(b"h", spec, 0, key_id) + encode(seq) + encode(digest)
    return hmac.digest(key, message, "sha256").hex()


def plain_values(spec: ChainSpec, keyring: Keyring, row: Any) -> dict[str, Any]:
    """A stored row's values as MACed: sealed columns opened (UNREADABLE if they fail)."""
    values = dict(row._mapping)
    for name, context in spec.sealed.items():
        stored = values.get(name)
        if stored is None:
            continue
        try:
            values[name] = keyring.open(stored, context=context(int(values["seq"])))
        except DecryptionError:
            values[name] = UNREADABLE
    return values


def _stored_macs(text: Any, count: int) -> list[str] | None:
    try:
        macs = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return None
    if not isinstance(macs, list) or len(macs) != count:
        return None
    if not all(isinstance(m, str) for m in macs):
        return None
    return macs


def mismatch(spec: ChainSpec, keyring: Keyring, row: Any) -> str | None:
    """None when the row holds; otherwise the first stored column that no longer matches."""
    values = plain_values(spec, keyring, row)
    version, key_id = values.get("mac_version"), values.get("mac_key")
    stored = values[spec.mac_column] or ""
    if version not in spec.versions:
        return "mac_version"
    key = keyring.mac_key(str(key_id)) if isinstance(key_id, str) else None
    if key is None:
        return "mac_key"
    columns = spec.versions[version]
    macs = _stored_macs(values.get("column_macs"), len(columns))
    recomputed = column_macs(spec, key, key_id, version, values)
    if macs is not None and hmac.compare_digest(row_mac(spec, key, key_id, version, macs), stored):
        # The stored column MACs are authentic: the first that differs names the column.
        for name, mine, theirs in zip(columns, recomputed, macs, strict=True):
            if not hmac.compare_digest(mine, theirs):
                return name
        return None
    if hmac.compare_digest(row_mac(spec, key, key_id, version, recomputed), stored):
        return "column_macs"
    if macs is not None:
        for other_id, other in keyring.mac_keys.items():
            if other_id != key_id and row_mac(spec, other, other_id, version, macs) == stored:
                return "mac_key"
        for other_version, listed in spec.versions.items():
            if other_version != version and len(listed) == len(macs):
                if row_mac(spec, key, key_id, other_version, macs) == stored:
                    return "mac_version"
    return spec.mac_column
