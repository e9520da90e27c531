"""The emergency directory's domain: phones, entries, CSV parsing, dry runs, resolution."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisis.directory import (
    DEFAULT_STALE_DAYS,
    EXAMPLE_MARK,
    NATIONAL,
    DirectoryEntry,
    EntryInvalid,
    area_key,
    county_key,
    entry_from_text,
    example_entries,
    format_phone,
    is_fictional,
    normalize_phone,
    resolve,
    stale_entries,
)
from crisis.directory_import import (
    COLUMNS,
    MAX_CSV_BYTES,
    MAX_CSV_ROWS,
    parse_csv,
    plan_import,
    to_csv,
)

TODAY = dt.date(2026, 11, 23)
HEADER = ",".join(COLUMNS)


def _entry(**overrides: object) -> DirectoryEntry:
    base = DirectoryEntry(
        state="CA",
        county="Fresno",
        zip=None,
        psap_phone="5596217000",
        crisis_line="5596006000",
        mobile_crisis=None,
        ed_name="Community Regional Medical Center",
        ed_address="2823 Fresno St, Fresno, CA 93721",
        ed_phone="5594596000",
        police_nonemergency=None,
        verified_on=TODAY - dt.timedelta(days=3),
        owner="Operations",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


# Phones --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["(559) 621-7000", "559-621-7000", "559.621.7000", "+1 559 621 7000", "1 (559) 621-7000"],
)
def test_us_numbers_are_kept_as_their_ten_digits(raw: str) -> None:
    assert normalize_phone(raw) == "5596217000"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("911", "10-digit"),
        ("988", "10-digit"),
        ("211", "10-digit"),
        ("621-7000", "10 digits"),
        ("+44 20 7946 0000", "only US numbers"),
        ("059-621-7000", "not a valid"),
        ("559-111-7000", "not a valid"),
        ("911-621-7000", "not a valid"),
        ("call the desk", "enter a phone number"),
        ("559 621 7000 x12", "enter a phone number"),
    ],
)
def test_local_numbers_refuse_short_codes_and_malformed_numbers(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize_phone(raw)


def test_short_codes_are_valid_only_as_national_numbers() -> None:
    assert normalize_phone("911", national=True) == "911"
    assert normalize_phone("988", national=True) == "988"
    with pytest.raises(ValueError):
        normalize_phone("411", national=True)


def test_fictional_range_and_formatting() -> None:
    assert is_fictional("5595550100") and is_fictional("2125550199")
    assert not is_fictional("5595550200") and not is_fictional("5596217000")
    assert format_phone("5596217000") == "(559) 621-7000"


# Entries -------------------------------------------------------------------------------------


def test_an_entry_validates_every_field_and_names_each_problem() -> None:
    with pytest.raises(EntryInvalid) as caught:
        entry_from_text(
            {
                "state": "Californie",
                "county": "=HYPERLINK(1)",
                "zip": "937",
                "psap_phone": "911",
                "ed_phone": "(559) 459-6000",
                "verified_on": "2026-11-24",
                "owner": "",
                "example": "maybe",
            },
            TODAY,
        )
    assert set(caught.value.errors) == {
        "state",
        "county",
        "zip",
        "psap_phone",
        "ed_name",
        "verified_on",
        "owner",
        "example",
    }
    assert caught.value.errors["verified_on"] == "cannot be in the future"
    assert "formulas" in caught.value.errors["county"]


def test_example_rows_carry_only_fictional_numbers_and_real_rows_none() -> None:
    row = {**_entry().as_text(), "crisis_line": "(559) 555-0123"}
    with pytest.raises(EntryInvalid, match="mark the row as an example"):
        entry_from_text(row, TODAY)
    with pytest.raises(EntryInvalid, match="only use fictional numbers"):
        entry_from_text({**_entry().as_text(), "example": "yes"}, TODAY)
    for shipped in example_entries(TODAY):
        assert shipped.example
        assert entry_from_text(shipped.as_text(), TODAY) == shipped
        numbers = [getattr(shipped, n) for n in ("psap_phone", "crisis_line", "ed_phone")]
        assert all(is_fictional(n) for n in numbers)
    assert "EXAMPLE" in EXAMPLE_MARK


def test_area_keys_ignore_case_spacing_and_the_word_county() -> None:
    assert county_key("  Fresno   COUNTY ") == county_key("fresno") == "fresno"
    assert county_key("San Luis Obispo County") == "san luis obispo"
    assert area_key("ca", "Fresno County", None) == area_key("CA", "fresno", None) == "CA|fresno|*"
    assert area_key("CA", "Fresno", "93701") == "CA|fresno|93701"


# CSV -----------------------------------------------------------------------------------------


def test_line_numbers_count_the_header_as_line_one_and_follow_multiline_values() -> None:
    good = _entry().as_text()
    cells = [good[c] for c in COLUMNS]
    row = ",".join(f'"{c}"' for c in cells)
    multiline = row.replace('"Community Regional Medical Center"', '"Community\nRegional"', 1)
    bad_zip = row.replace('""', '"12"', 1)  # the first empty value is the ZIP
    text = "\n".join([HEADER, "", multiline, bad_zip]) + "\n"
    parsed = parse_csv(text, TODAY)
    assert [r.line for r in parsed.rows] == [3]
    assert [(e.line, e.column) for e in parsed.errors] == [(5, "zip")]


def test_whole_files_are_refused_for_size_rows_header_and_encoding() -> None:
    assert "larger than" in (parse_csv(b"x" * (MAX_CSV_BYTES + 1), TODAY).refused or "")
    rows = "\n".join(["CA,Fresno,,,,,,,,,,,"] * (MAX_CSV_ROWS + 1))
    assert "more than" in (parse_csv(f"{HEADER}\n{rows}\n", TODAY).refused or "")
    assert "UTF-8" in (parse_csv(b"\xff\xfe\x00", TODAY).refused or "")
    assert "empty" in (parse_csv("", TODAY).refused or "")
    assert "unknown column 'fax'" in (parse_csv(HEADER + ",fax\n", TODAY).refused or "")
    assert "appears twice" in (parse_csv(HEADER + ",owner\n", TODAY).refused or "")
    missing = HEADER.replace(",psap_phone", "")
    assert "missing column 'psap_phone'" in (parse_csv(missing + "\n", TODAY).refused or "")
    # The example column may be left out; the BOM spreadsheets write is ignored.
    without_example = HEADER.removesuffix(",example")
    assert parse_csv(("\ufeff" + without_example + "\n").encode(), TODAY).ok


def test_export_parses_back_to_the_same_entries_in_a_stable_order() -> None:
    entries = [
        _entry(zip="93701", ed_address='1 "Main", Suite 2, Fresno'),
        _entry(),
        _entry(state="NV", county="Clark", owner="Ops, night desk"),
        *example_entries(TODAY),
    ]
    exported = to_csv(entries)
    assert exported == to_csv(reversed(entries))
    parsed = parse_csv(exported.encode(), TODAY)
    assert parsed.ok
    assert {r.entry.key: r.entry for r in parsed.rows} == {e.key: e for e in entries}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_the_parser_never_crashes_on_arbitrary_text(text: str) -> None:
    parsed = parse_csv(text, TODAY)
    assert parsed.refused is not None or all(e.line >= 2 for e in parsed.errors)
    assert all(r.line >= 2 for r in parsed.rows)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=30), max_size=14),
        max_size=12,
    )
)
def test_the_parser_answers_every_row_with_an_entry_or_a_reason(rows: list[list[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    parsed = parse_csv(out.getvalue(), TODAY)
    if parsed.refused is not None:
        assert "NUL" in parsed.refused
        return
    answered = {r.line for r in parsed.rows} | {e.line for e in parsed.errors}
    assert len(answered) == sum(1 for row in rows if any(cell.strip() for cell in row))


# Dry run -------------------------------------------------------------------------------------


def test_a_dry_run_sorts_lines_into_add_update_unchanged_and_rejected() -> None:
    current = [_entry(id="a"), _entry(zip="93701", id="b")]
    changed = _entry(crisis_line="5596006001").as_text()
    same = _entry(zip="93701").as_text()
    new = _entry(county="Madera").as_text()
    lines = [HEADER] + [",".join(f'"{row[c]}"' for c in COLUMNS) for row in (changed, same, new)]
    lines.append("CA,,,,,,,,,,,,")
    plan = plan_import(current, parse_csv("\n".join(lines), TODAY))
    assert [(c.line, c.existing_id, c.fields) for c in plan.update] == [(2, "a", ("crisis_line",))]
    assert [(c.line, c.existing_id) for c in plan.unchanged] == [(3, "b")]
    assert [c.line for c in plan.add] == [4]
    assert {e.line for e in plan.rejected} == {5}
    assert not plan.applicable  # one bad line holds the whole file back
    fixed = plan_import(current, parse_csv("\n".join(lines[:-1]), TODAY))
    assert fixed.applicable
    assert fixed.digest() == plan_import(current, parse_csv("\n".join(lines[:-1]), TODAY)).digest()
    moved = [_entry(id="a", crisis_line="5596006001"), current[1]]
    assert plan_import(moved, parse_csv("\n".join(lines[:-1]), TODAY)).digest() != fixed.digest()


# Staleness and resolution --------------------------------------------------------------------


def test_entries_are_stale_after_the_threshold_not_on_it() -> None:
    on_the_day = _entry(verified_on=TODAY - dt.timedelta(days=DEFAULT_STALE_DAYS))
    a_day_late = _entry(county="Kern", verified_on=TODAY - dt.timedelta(days=181))
    older = _entry(county="Kings", verified_on=TODAY - dt.timedelta(days=400))
    assert not on_the_day.is_stale(TODAY) and a_day_late.is_stale(TODAY)
    found = stale_entries([on_the_day, a_day_late, older], TODAY)
    assert [(r.entry.county, r.age_days) for r in found] == [("Kings", 400), ("Kern", 181)]
    assert len(stale_entries([on_the_day, a_day_late], TODAY, days=30)) == 2


def test_resolution_prefers_the_zip_then_the_county_and_always_adds_national_numbers() -> None:
    county = _entry()
    by_zip = _entry(zip="93701", psap_phone="5596217001", verified_on=dt.date(2025, 1, 1))
    elsewhere = _entry(state="NV", county="Fresno", psap_phone="7025550000")
    entries = [county, by_zip, elsewhere, *example_entries(TODAY)]

    info = resolve(entries, "93701-1234", "Fresno County", TODAY, state="CA")
    assert [(r.matched_by, r.entry.psap_phone) for r in info.local] == [
        ("zip", "5596217001"),
        ("county", "5596217000"),
    ]
    assert info.primary is not None and info.primary.stale
    assert info.primary.verified_on == dt.date(2025, 1, 1)
    assert not info.local[1].stale

    by_county = resolve(entries, "93799", "fresno", TODAY, state="CA")
    assert [r.matched_by for r in by_county.local] == ["county"]
    zip_only = resolve(entries, "93701", None, TODAY)
    assert [r.entry.state for r in zip_only.local] == ["CA", "CA"]  # not Fresno, NV

    nothing = resolve(entries, None, None, TODAY)
    assert not nothing.found and nothing.primary is None
    for answer in (info, by_county, nothing):
        assert {n.number for n in answer.national} == {"911", "988", "18002221222"}
    assert NATIONAL[0].text  # 988 takes texts


def test_a_zip_straddling_a_county_line_lists_the_patients_county_first() -> None:
    fresno = _entry(zip="93654")
    tulare = _entry(zip="93654", county="Tulare", psap_phone="5597337000")
    info = resolve([fresno, tulare], "93654", "Tulare", TODAY)
    assert [r.entry.county for r in info.local] == ["Tulare", "Fresno"]
