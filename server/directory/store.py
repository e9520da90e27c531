"""The local emergency directory in storage: rows in, `DirectoryEntry` values out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from crisis.directory import DirectoryEntry, LocalEmergencyInfo, county_key, example_entries
from crisis.directory import resolve as resolve_entries
from crisis.directory_import import ImportPlan
from server.catalog.store import new_id
from server.storage.tables import emergency_directory as table

CONTENT = (
    "state",
    "county",
    "zip",
    "psap_phone",
    "crisis_line",
    "mobile_crisis",
    "ed_name",
    "ed_address",
    "ed_phone",
    "police_nonemergency",
    "verified_on",
    "owner",
    "example",
)


class AreaTaken(Exception):
    """Another entry already covers this area (state, county, ZIP)."""


def _entry(row: Any) -> DirectoryEntry:
    values = {name: getattr(row, name) for name in CONTENT}
    verified = values["verified_on"]
    if isinstance(verified, dt.datetime):  # some drivers hand dates back as datetimes
        values["verified_on"] = verified.date()
    return DirectoryEntry(**values, id=row.id)


def _values(entry: DirectoryEntry, by: str | None, now: dt.datetime) -> dict[str, Any]:
    return {
        **{name: getattr(entry, name) for name in CONTENT},
        "area_key": entry.key,
        "county_key": county_key(entry.county),
        "updated_at": now,
        "updated_by": by,
    }


async def entries(conn: AsyncConnection) -> list[DirectoryEntry]:
    """Every entry, in area order."""
    # County-wide rows first on both engines (SQLite and PostgreSQL order NULLs apart).
    query = sa.select(table).order_by(table.c.state, table.c.county_key, table.c.zip.nulls_first())
    return [_entry(row) for row in await conn.execute(query)]


async def entry(conn: AsyncConnection, entry_id: str) -> DirectoryEntry | None:
    """One entry, or None."""
    row = (await conn.execute(sa.select(table).where(table.c.id == entry_id))).first()
    return None if row is None else _entry(row)


async def _area_owner(conn: AsyncConnection, key: str) -> str | None:
    found = await conn.scalar(sa.select(table.c.id).where(table.c.area_key == key))
    return None if found is None else str(found)


async def create(
    conn: AsyncConnection, new: DirectoryEntry, by: str | None, now: dt.datetime
) -> str:
    """Add an entry; `AreaTaken` when its area has one already."""
    if await _area_owner(conn, new.key) is not None:
        raise AreaTaken(new.key)
    entry_id = new_id()
    await conn.execute(table.insert().values(id=entry_id, **_values(new, by, now)))
    return entry_id


async def update(
    conn: AsyncConnection, entry_id: str, changed: DirectoryEntry, by: str, now: dt.datetime
) -> None:
    """Replace an entry's fields; `AreaTaken` when it would collide with another area."""
    holder = await _area_owner(conn, changed.key)
    if holder is not None and holder != entry_id:
        raise AreaTaken(changed.key)
    await conn.execute(
        table.update().where(table.c.id == entry_id).values(**_values(changed, by, now))
    )


async def delete(conn: AsyncConnection, entry_id: str) -> bool:
    """Remove an entry; False when there was none."""
    result = await conn.execute(table.delete().where(table.c.id == entry_id))
    return bool(result.rowcount)


async def apply_plan(
    conn: AsyncConnection, plan: ImportPlan, by: str, now: dt.datetime
) -> list[tuple[str, str]]:
    """Write a confirmed import plan; return (action, entry id) for each row written."""
    written: list[tuple[str, str]] = []
    for change in plan.add:
        written.append(("added", await create(conn, change.entry, by, now)))
    for change in plan.update:
        assert change.existing_id is not None
        await update(conn, change.existing_id, change.entry, by, now)
        written.append(("updated", change.existing_id))
    return written


async def ensure_examples(conn: AsyncConnection, today: dt.date, now: dt.datetime) -> int:
    """Install the shipped example rows whose areas are empty; admins' rows are never touched."""
    added = 0
    for example in example_entries(today):
        if await _area_owner(conn, example.key) is None:
            await create(conn, example, None, now)
            added += 1
    return added


async def resolve(
    conn: AsyncConnection,
    zip_code: str | None,
    county: str | None,
    today: dt.date,
    *,
    state: str | None = None,
    stale_days: int,
) -> LocalEmergencyInfo:
    """The local emergency numbers for a confirmed location (ZIP first, then county)."""
    conditions = []
    if zip_code:
        conditions.append(table.c.zip == zip_code.strip()[:5])
    if county and county.strip():
        conditions.append(table.c.county_key == county_key(county))
    candidates: list[DirectoryEntry] = []
    if conditions:
        rows = await conn.execute(sa.select(table).where(sa.or_(*conditions)))
        candidates = [_entry(row) for row in rows]
        # The county-wide rows of the counties a ZIP row names answer too.
        extra = {county_key(e.county) for e in candidates if e.zip} - {county_key(county or "")}
        if extra:
            more = await conn.execute(
                sa.select(table).where(table.c.zip.is_(None), table.c.county_key.in_(extra))
            )
            candidates += [_entry(row) for row in more]
    return resolve_entries(candidates, zip_code, county, today, state=state, stale_days=stale_days)
