"""Every sealed column in the schema is one that key rotation re-encrypts."""

from __future__ import annotations

from server.keyrotation import SEALED_COLUMNS
from server.storage.tables import metadata


def test_key_rotation_knows_every_sealed_column_in_the_schema() -> None:
    in_schema = {
        (table.name, column.name)
        for table in metadata.tables.values()
        for column in table.columns
        if column.name.endswith("_enc")
    }
    rotated = {(sealed.table.name, sealed.column) for sealed in SEALED_COLUMNS}
    assert in_schema - rotated == set()
    assert rotated - in_schema == set()
