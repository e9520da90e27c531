"""The local emergency directory: whom to call for the place a patient is in, and how fresh it is.

A clinician dialing 911 reaches the dispatch center (PSAP) of the clinician's own location,
not the patient's (CLINICAL.md, "911 trap"). So the directory holds, per area (a county,
or a ZIP code inside one), the PSAP's 10-digit emergency line and the other local numbers,
each row with the date someone last verified it. Plain Python: the server stores rows and
shows them; this module decides what a valid row is and which rows answer a location.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

DEFAULT_STALE_DAYS = 180

# Fields of an entry in the order forms, CSV files and exports use.
FIELDS = (
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
PHONE_FIELDS = ("psap_phone", "crisis_line", "mobile_crisis", "ed_phone", "police_nonemergency")
REQUIRED = frozenset({"state", "county", "psap_phone", "verified_on", "owner"})
LABELS = {
    "state": "State",
    "county": "County",
    "zip": "ZIP code",
    "psap_phone": "Emergency dispatch (PSAP) 10-digit line",
    "crisis_line": "County crisis line",
    "mobile_crisis": "Mobile crisis team",
    "ed_name": "Nearest emergency department",
    "ed_address": "Emergency department address",
    "ed_phone": "Emergency department phone",
    "police_nonemergency": "Police non-emergency line",
    "verified_on": "Verified on",
    "owner": "Owner (who keeps this row current)",
    "example": "Example row",
}
MAX_LENGTHS = {"county": 64, "ed_name": 120, "ed_address": 300, "owner": 120}
EXAMPLE_MARK = "EXAMPLE - not a real number"

US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV "
    "NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI".split()
)
_PHONE_CHARS = re.compile(r"^\+?[0-9 ().-]+$")
_ZIP = re.compile(r"^(\d{5})(?:-\d{4})?$")
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection); an
# exported file must open safely, so such text is refused on the way in.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_COUNTY_SUFFIX = re.compile(r"\s+(county|parish|borough|census area|municipality)$")
# Three-digit numbers that only ever appear as national entries.
NATIONAL_SHORT = frozenset({"911", "988"})


class EntryInvalid(ValueError):
    """An entry that cannot be saved, with one reason per offending field."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in errors.items()))
        self.errors = dict(errors)


# Phones --------------------------------------------------------------------------------------


def normalize_phone(raw: str, *, national: bool = False) -> str:
    """A US number as its 10 digits (911 and 988 as 3, for national entries only)."""
    text = raw.strip()
    if not text or not _PHONE_CHARS.match(text):
        raise ValueError("enter a phone number: digits, spaces, ( ) . - and an optional +1")
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) == 3:
        if national and digits in NATIONAL_SHORT:
            return digits
        # The 911 trap: a short code reaches whoever answers where the caller is.
        raise ValueError(
            "a 3-digit number reaches the caller's own area, not the patient's: "
            "enter the full 10-digit number"
        )
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    elif text.startswith("+"):
        raise ValueError("only US numbers (+1) can be entered")
    if len(digits) != 10:
        raise ValueError("a US phone number has 10 digits (area code and number)")
    # NANP: area code and exchange both start with 2-9, and neither is an N11 service code.
    area, exchange = digits[:3], digits[3:6]
    if area[0] in "01" or exchange[0] in "01" or area[1:] == "11" or exchange[1:] == "11":
        raise ValueError("this is not a valid US phone number")
    return digits


def is_fictional(digits: str) -> bool:
    """True for 555-0100 through 555-0199: reserved for fiction in every area code."""
    return len(digits) == 10 and digits[3:6] == "555" and digits[6:8] == "01"


def format_phone(digits: str) -> str:
    """A stored number as people read it: (559) 555-0100."""
    if len(digits) != 10:
        return digits
    return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"


# Areas ---------------------------------------------------------------------------------------


def county_key(county: str) -> str:
    """A county name compared loosely: case, spacing and a trailing "County" do not matter."""
    folded = " ".join(county.casefold().split())
    return _COUNTY_SUFFIX.sub("", folded)


def normalize_zip(raw: str) -> str:
    """A five-digit ZIP code (a ZIP+4 is cut to its first five digits)."""
    found = _ZIP.match(raw.strip())
    if found is None:
        raise ValueError("a ZIP code has 5 digits (or ZIP+4, e.g. 93701-1234)")
    return found.group(1)


def area_key(state: str, county: str, zip_code: str | None) -> str:
    """The one key an area has: an import updates the row with the same key."""
    return f"{state.upper()}|{county_key(county)}|{zip_code or '*'}"


# Entries -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One area's local emergency numbers, as last verified by its owner."""

    state: str
    county: str
    zip: str | None
    psap_phone: str
    crisis_line: str | None
    mobile_crisis: str | None
    ed_name: str | None
    ed_address: str | None
    ed_phone: str | None
    police_nonemergency: str | None
    verified_on: dt.date
    owner: str
    example: bool = False
    id: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """This entry's area key (state, county, ZIP)."""
        return area_key(self.state, self.county, self.zip)

    @property
    def area(self) -> str:
        """The area as people name it: "93701, Fresno, CA" or "Fresno, CA"."""
        place = f"{self.county}, {self.state}"
        return f"{self.zip}, {place}" if self.zip else place

    def age_days(self, today: dt.date) -> int:
        """Days since the entry was last verified."""
        return (today - self.verified_on).days

    def is_stale(self, today: dt.date, days: int = DEFAULT_STALE_DAYS) -> bool:
        """True when the entry was last verified more than `days` days ago."""
        return self.age_days(today) > days

    def as_text(self) -> dict[str, str]:
        """Every field as the text a form or a CSV cell shows (phones formatted)."""
        out: dict[str, str] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if name == "example":
                out[name] = "yes" if value else "no"
            elif name == "verified_on":
                out[name] = value.isoformat()
            elif name in PHONE_FIELDS:
                out[name] = format_phone(value) if value else ""
            else:
                out[name] = value or ""
        return out

    def changed_fields(self, other: DirectoryEntry) -> tuple[str, ...]:
        """The fields whose values differ from `other`'s."""
        return tuple(name for name in FIELDS if getattr(self, name) != getattr(other, name))


def _text(name: str, raw: str, errors: dict[str, str]) -> str | None:
    value = " ".join(raw.split())
    if not value:
        return None
    if value.startswith(_FORMULA_START):
        errors[name] = "must not start with = + - or @ (spreadsheets run those as formulas)"
    elif any(ord(ch) < 32 for ch in raw if ch not in "\t\r\n"):
        errors[name] = "contains control characters"
    elif len(value) > MAX_LENGTHS.get(name, 120):
        errors[name] = f"at most {MAX_LENGTHS.get(name, 120)} characters"
    return value


def parse_flag(raw: str) -> bool:
    """yes/no, true/false, 1/0 (blank is no)."""
    value = raw.strip().casefold()
    if value in ("", "no", "n", "false", "0"):
        return False
    if value in ("yes", "y", "true", "1", "on"):
        return True
    raise ValueError("enter yes or no")


def entry_from_text(
    values: Mapping[str, str], today: dt.date, *, entry_id: str | None = None
) -> DirectoryEntry:
    """Validate a form's or a CSV row's text into an entry, or raise `EntryInvalid`."""
    errors: dict[str, str] = {}
    raw = {name: str(values.get(name) or "") for name in FIELDS}
    for name in REQUIRED:
        if not raw[name].strip():
            errors[name] = "required"

    state = raw["state"].strip().upper()
    if state and state not in US_STATES:
        errors["state"] = "a two-letter US state code, e.g. CA"
    county = _text("county", raw["county"], errors)
    owner = _text("owner", raw["owner"], errors)
    ed_name = _text("ed_name", raw["ed_name"], errors)
    ed_address = _text("ed_address", raw["ed_address"], errors)

    zip_code: str | None = None
    if raw["zip"].strip():
        try:
            zip_code = normalize_zip(raw["zip"])
        except ValueError as exc:
            errors["zip"] = str(exc)

    example = False
    try:
        example = parse_flag(raw["example"])
    except ValueError as exc:
        errors["example"] = str(exc)

    phones: dict[str, str | None] = {}
    for name in PHONE_FIELDS:
        phones[name] = None
        if not raw[name].strip():
            continue
        try:
            digits = normalize_phone(raw[name])
        except ValueError as exc:
            errors.setdefault(name, str(exc))
            continue
        # Example rows carry only fictional numbers, real rows never do: a row is never
        # half example, and nobody dials a made-up number in a crisis.
        if example and not is_fictional(digits):
            errors[name] = "an example row may only use fictional numbers (555-0100 to 555-0199)"
        elif not example and is_fictional(digits):
            errors[name] = "555-0100 to 555-0199 are fictional numbers: mark the row as an example"
        phones[name] = digits

    if (ed_address or phones["ed_phone"]) and not ed_name:
        errors.setdefault("ed_name", "name the emergency department the address and phone are for")

    verified_on: dt.date | None = None
    if raw["verified_on"].strip():
        try:
            verified_on = dt.date.fromisoformat(raw["verified_on"].strip())
        except ValueError:
            errors["verified_on"] = "a date as YYYY-MM-DD"
        else:
            if verified_on > today:
                errors["verified_on"] = "cannot be in the future"

    if errors:
        raise EntryInvalid(errors)
    assert county is not None and owner is not None and verified_on is not None
    psap = phones["psap_phone"]
    assert psap is not None
    return DirectoryEntry(
        state=state,
        county=county,
        zip=zip_code,
        psap_phone=psap,
        crisis_line=phones["crisis_line"],
        mobile_crisis=phones["mobile_crisis"],
        ed_name=ed_name,
        ed_address=ed_address,
        ed_phone=phones["ed_phone"],
        police_nonemergency=phones["police_nonemergency"],
        verified_on=verified_on,
        owner=owner,
        example=example,
        id=entry_id,
    )


def example_entries(verified_on: dt.date) -> tuple[DirectoryEntry, ...]:
    """The rows the software ships: a fictional county, every number a fictional one."""
    county_wide = DirectoryEntry(
        state="CA",
        county="Example County",
        zip=None,
        psap_phone="5555550101",
        crisis_line="5555550102",
        mobile_crisis="5555550103",
        ed_name="Example County General Hospital (fictional)",
        ed_address="100 Example Avenue, Example City, CA",
        ed_phone="5555550104",
        police_nonemergency="5555550105",
        verified_on=verified_on,
        owner="Example data shipped with the software: replace with your area's rows",
        example=True,
    )
    one_zip = replace(
        county_wide,
        zip="00000",
        psap_phone="5555550111",
        ed_name="Example Valley Medical Center (fictional)",
        ed_address="200 Sample Road, Example Valley, CA",
        ed_phone="5555550114",
    )
    return (county_wide, one_zip)


# National numbers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NationalNumber:
    """A number that works anywhere in the US, shown with every resolution."""

    name: str
    number: str  # what to dial
    display: str
    text: bool  # also takes text messages
    note: str


NATIONAL: tuple[NationalNumber, ...] = (
    NationalNumber(
        "988 Suicide & Crisis Lifeline",
        "988",
        "988",
        True,
        "Call or text 988, any time.",
    ),
    NationalNumber(
        "Emergency",
        "911",
        "911",
        False,
        "911 reaches the dispatch center where the caller is: for a patient somewhere "
        "else, use their area's emergency dispatch line.",
    ),
    NationalNumber(
        "Poison Control",
        "18002221222",
        "1-800-222-1222",
        False,
        "Poisoning and overdose advice, any time.",
    ),
)


# Staleness and resolution --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedEntry:
    """A directory entry as it answers one location: how it matched and how fresh it is."""

    entry: DirectoryEntry
    matched_by: str  # "zip" | "county"
    age_days: int
    stale: bool

    @property
    def verified_on(self) -> dt.date:
        """When the entry's numbers were last verified."""
        return self.entry.verified_on


@dataclass(frozen=True, slots=True)
class LocalEmergencyInfo:
    """Emergency numbers for one confirmed location: the area's entries, then national ones."""

    zip: str | None
    county: str | None
    state: str | None
    local: tuple[ResolvedEntry, ...]
    national: tuple[NationalNumber, ...] = NATIONAL

    @property
    def primary(self) -> ResolvedEntry | None:
        """The most specific entry: the ZIP's if there is one, else the county's."""
        return self.local[0] if self.local else None

    @property
    def found(self) -> bool:
        """True when the directory has an entry for this location."""
        return bool(self.local)


def stale_entries(
    entries: Iterable[DirectoryEntry], today: dt.date, days: int = DEFAULT_STALE_DAYS
) -> list[ResolvedEntry]:
    """Entries last verified more than `days` days ago, oldest first."""
    found = [
        ResolvedEntry(e, "zip" if e.zip else "county", e.age_days(today), True)
        for e in entries
        if e.is_stale(today, days)
    ]
    return sorted(found, key=lambda r: (-r.age_days, r.entry.key))


def resolve(
    entries: Iterable[DirectoryEntry],
    zip_code: str | None,
    county: str | None,
    today: dt.date,
    *,
    state: str | None = None,
    stale_days: int = DEFAULT_STALE_DAYS,
) -> LocalEmergencyInfo:
    """The entries for a location: the ZIP's first, then the county-wide ones.

    A ZIP row is the most specific answer (a county can have several PSAPs and EDs); the
    county-wide row follows it because it may hold numbers the ZIP row leaves blank. The
    national numbers are always part of the answer, found or not.
    """
    pool = list(entries)
    wanted_state = state.strip().upper() if state and state.strip() else None
    if wanted_state is not None:
        pool = [e for e in pool if e.state == wanted_state]
    zip5: str | None = None
    if zip_code and zip_code.strip():
        try:
            zip5 = normalize_zip(zip_code)
        except ValueError:
            zip5 = None
    wanted_county = county_key(county) if county and county.strip() else None

    by_zip = [e for e in pool if zip5 is not None and e.zip == zip5]
    if wanted_county is not None and len(by_zip) > 1:
        # A ZIP can straddle a county line: the patient's own county comes first.
        by_zip.sort(key=lambda e: county_key(e.county) != wanted_county)
    counties = {wanted_county} if wanted_county else {county_key(e.county) for e in by_zip}
    states = {e.state for e in by_zip}
    by_county = [
        e
        for e in pool
        if e.zip is None
        and county_key(e.county) in counties
        and (not states or wanted_county is not None or e.state in states)
    ]

    def resolved(entry: DirectoryEntry, how: str) -> ResolvedEntry:
        age = entry.age_days(today)
        return ResolvedEntry(entry, how, age, age > stale_days)

    local = tuple(
        [resolved(e, "zip") for e in by_zip]
        + [resolved(e, "county") for e in sorted(by_county, key=lambda e: e.key)]
    )
    return LocalEmergencyInfo(zip5, county, wanted_state, local)
