"""The emergency directory as CSV: parse with per-line errors, plan a dry run, export.

An import adds and updates rows, never deletes them, and applies only a file with no
rejected line: a directory half-loaded from a bad file would be worse than the old one.
Line numbers are the ones a person sees in the file, the header being line 1.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass

from crisis.directory import FIELDS, DirectoryEntry, EntryInvalid, entry_from_text

COLUMNS = FIELDS
OPTIONAL_COLUMNS = frozenset({"example"})  # a file without it holds real rows only
MAX_CSV_BYTES = 1_000_000
MAX_CSV_ROWS = 5_000


@dataclass(frozen=True, slots=True)
class LineError:
    """Why one line of the file was rejected."""

    line: int
    reason: str
    column: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """A valid line and the entry it holds."""

    line: int
    entry: DirectoryEntry


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What a file holds: valid rows, rejected lines, or why the whole file was refused."""

    rows: tuple[ParsedRow, ...] = ()
    errors: tuple[LineError, ...] = ()
    refused: str | None = None

    @property
    def ok(self) -> bool:
        """True when every line is valid."""
        return self.refused is None and not self.errors


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    # utf-8-sig drops the byte-order mark that spreadsheet programs write.
    return data.decode("utf-8-sig")


def _header(cells: list[str]) -> tuple[list[str], str | None]:
    names = [cell.strip().casefold() for cell in cells]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        return names, (
            f"line 1: unknown column {unknown[0]!r}; the columns are {', '.join(COLUMNS)}"
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return names, f"line 1: column {name!r} appears twice"
        seen.add(name)
    missing = [c for c in COLUMNS if c not in seen and c not in OPTIONAL_COLUMNS]
    if missing:
        return names, f"line 1: missing column {', '.join(repr(m) for m in missing)}"
    return names, None


def parse_csv(data: bytes | str, today: dt.date) -> ParseResult:
    """Every line of a directory CSV file checked; never raises on what a file holds."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_CSV_BYTES:
        return ParseResult(refused=f"the file is larger than {MAX_CSV_BYTES // 1000} kB")
    try:
        text = _decode(data)
    except UnicodeDecodeError:
        return ParseResult(refused="the file is not UTF-8 text: save it as “CSV UTF-8”")
    if "\x00" in text:
        return ParseResult(refused="the file is not a CSV text file (it holds NUL bytes)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        return ParseResult(refused=f"line 1: {exc}")
    if first is None or not any(cell.strip() for cell in first):
        return ParseResult(refused="the file is empty: line 1 must name the columns")
    names, problem = _header(first)
    if problem is not None:
        return ParseResult(refused=problem)

    rows: list[ParsedRow] = []
    errors: list[LineError] = []
    first_line: dict[str, int] = {}
    count = 0
    last_line = reader.line_num
    while True:
        line = last_line + 1  # a quoted value may span lines: report where the row begins
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(LineError(line, f"not valid CSV: {exc}"))
            last_line = reader.line_num
            continue
        last_line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        count += 1
        if count > MAX_CSV_ROWS:
            return ParseResult(refused=f"the file has more than {MAX_CSV_ROWS} rows")
        if len(cells) != len(names):
            errors.append(
                LineError(line, f"{len(cells)} values, but the header names {len(names)} columns")
            )
            continue
        try:
            entry = entry_from_text(dict(zip(names, cells, strict=True)), today)
        except EntryInvalid as exc:
            for column, reason in exc.errors.items():
                errors.append(LineError(line, reason, column))
            continue
        earlier = first_line.get(entry.key)
        if earlier is not None:
            errors.append(
                LineError(line, f"the same area (state, county, ZIP) as line {earlier}", "zip")
            )
            continue
        first_line[entry.key] = line
        rows.append(ParsedRow(line, entry))
    return ParseResult(tuple(rows), tuple(errors))


def to_csv(entries: Iterable[DirectoryEntry]) -> str:
    """The entries as a CSV file that imports back unchanged (stable column and row order)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for entry in sorted(entries, key=lambda e: e.key):
        text = entry.as_text()
        writer.writerow([text[name] for name in COLUMNS])
    return out.getvalue()


# Dry run -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """What one valid line would do: add an entry, update one, or leave it as it is."""

    line: int
    entry: DirectoryEntry
    existing_id: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """A dry-run report: nothing is written until the same plan is confirmed."""

    add: tuple[PlannedChange, ...] = ()
    update: tuple[PlannedChange, ...] = ()
    unchanged: tuple[PlannedChange, ...] = ()
    rejected: tuple[LineError, ...] = ()
    refused: str | None = None

    @property
    def applicable(self) -> bool:
        """True when the file is valid throughout and would change something."""
        return self.refused is None and not self.rejected and bool(self.add or self.update)

    def digest(self) -> str:
        """A fingerprint of everything the plan would do, to confirm exactly that."""
        canonical = {
            "add": [[c.line, c.entry.as_text()] for c in self.add],
            "update": [[c.line, c.existing_id, c.entry.as_text()] for c in self.update],
            "unchanged": [[c.line, c.existing_id] for c in self.unchanged],
            "rejected": [[e.line, e.column, e.reason] for e in self.rejected],
            "refused": self.refused,
        }
        encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def plan_import(existing: Iterable[DirectoryEntry], parsed: ParseResult) -> ImportPlan:
    """Compare a parsed file with the directory as it is now."""
    if parsed.refused is not None:
        return ImportPlan(refused=parsed.refused)
    current = {entry.key: entry for entry in existing}
    add: list[PlannedChange] = []
    update: list[PlannedChange] = []
    unchanged: list[PlannedChange] = []
    for row in parsed.rows:
        old = current.get(row.entry.key)
        if old is None:
            add.append(PlannedChange(row.line, row.entry))
            continue
        changed = row.entry.changed_fields(old)
        change = PlannedChange(row.line, row.entry, old.id, changed)
        (update if changed else unchanged).append(change)
    rejected = tuple(sorted(parsed.errors, key=lambda e: (e.line, e.column or "")))
    return ImportPlan(tuple(add), tuple(update), tuple(unchanged), rejected)
