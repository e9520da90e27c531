"""Validated input for the JSON API and the demo seeder (pydantic v2, extra fields refused)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)
from typing_extensions import TypedDict

from crisis.questions import SEVERE_DEFAULTS
from rooms.schedule import ScheduleError, WeeklySlot, check_no_overlap, zone

_PHONE = re.compile(r"^\+?[0-9 ().-]{7,32}$")
Id = Annotated[str, StringConstraints(pattern=r"^[0-9a-f-]{36}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", min_length=1, max_length=63)
]


def _time_zone(value: str) -> str:
    try:
        zone(value)
    except ScheduleError as exc:
        raise ValueError(str(exc)) from None
    return value


def check_phone(value: str) -> str:
    digits = sum(ch.isdigit() for ch in value)
    if not _PHONE.match(value) or not 7 <= digits <= 15:
        raise ValueError("must be a phone number of digits, spaces, ( ) . - and an optional +")
    return value


TimeZone = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_time_zone)
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=32), AfterValidator(check_phone)
]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=300)]


class Strict(BaseModel):
    """Base for every input: unknown fields are an error, strings are trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class SignIn(Strict):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    code: Annotated[str, StringConstraints(max_length=64)] | None = None


ConsentKind = Literal["telehealth", "group_confidentiality", "emergency_plan", "part2"]
Instrument = Literal["phq9", "gad7", "cssrs"]


class SevereScores(TypedDict, total=False):
    """A program's severe totals: only stricter (lower) than the defaults, never looser."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    phq9: Annotated[int, Field(ge=1, le=SEVERE_DEFAULTS["phq9"])]
    gad7: Annotated[int, Field(ge=1, le=SEVERE_DEFAULTS["gad7"])]


class ProgramIn(Strict):
    name: Name
    kind: Literal["mental_health", "substance_use"] = "mental_health"
    time_zone: TimeZone = "America/Los_Angeles"
    phone: Phone
    join_link_mode: Literal["per_session", "standing"] = "per_session"
    join_requires_dob: bool = False
    # Consents each session type requires; None keeps the defaults (rooms/consent.py).
    consent_group: list[ConsentKind] | None = None
    consent_individual: list[ConsentKind] | None = None
    recording_enabled: bool = False
    # Days between asking each instrument (0 = every session); None keeps the defaults.
    screening_cadence: dict[Instrument, Annotated[int, Field(ge=0, le=365)]] | None = None
    # Severe totals that create a review task; None keeps the defaults.
    severe_scores: SevereScores | None = None


class SupportPerson(Strict):
    name: Name
    relationship: Annotated[str, StringConstraints(min_length=1, max_length=60)]
    phone: Phone


class InviteIn(Strict):
    program_id: Id
    email: EmailStr
    display_name: Name
    role: Literal["admin", "supervisor", "clinician"]
    licence: Annotated[str, StringConstraints(max_length=120)] | None = None


class JoinLinkIn(Strict):
    session_id: Id | None = None
    standing: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> JoinLinkIn:
        if self.standing == (self.session_id is not None):
            raise ValueError("give either a session_id or standing=true")
        return self


class StaffIn(InviteIn):
    password: Annotated[str, StringConstraints(min_length=12, max_length=256)]


class PatientIn(Strict):
    program_id: Id
    legal_name: Name
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=60)]
    date_of_birth: dt.date | None = None
    home_address: Address | None = None
    backup_phone: Phone | None = None
    alternate_phone: Phone | None = None
    support_person: SupportPerson | None = None
    support_release: bool = False
    preferred_ed: Annotated[str, StringConstraints(min_length=2, max_length=200)] | None = None
    time_zone: TimeZone = "America/Los_Angeles"
    adolescent: bool = False
    screening_cadence: dict[Instrument, Annotated[int, Field(ge=0, le=365)]] | None = None

    @model_validator(mode="after")
    def _birth_in_past(self) -> PatientIn:
        if self.date_of_birth is not None and self.date_of_birth >= dt.date.today():
            raise ValueError("date_of_birth must be in the past")
        if self.support_release and self.support_person is None:
            raise ValueError("a release to contact the support person needs a support person")
        return self


class SlotIn(Strict):
    day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    start: Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
    end: Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]

    def slot(self) -> WeeklySlot:
        """The domain slot."""
        return WeeklySlot.from_json({"day": self.day, "start": self.start, "end": self.end})


class GroupIn(Strict):
    program_id: Id
    name: Name
    lead_clinician_id: Id
    cofacilitator_id: Id | None = None
    member_ids: Annotated[list[Id], Field(max_length=30)] = []
    time_zone: TimeZone = "America/Los_Angeles"
    schedule: Annotated[list[SlotIn], Field(min_length=1, max_length=14)]
    template: Slug = "evening-group-180"
    starts_on: dt.date
    ends_on: dt.date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GroupIn:
        try:
            check_no_overlap([slot.slot() for slot in self.schedule])
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        if self.ends_on is not None and self.ends_on < self.starts_on:
            raise ValueError("ends_on must not be before starts_on")
        if self.cofacilitator_id == self.lead_clinician_id:
            raise ValueError("the co-facilitator must be a different clinician from the lead")
        if len(set(self.member_ids)) != len(self.member_ids):
            raise ValueError("member_ids lists a patient twice")
        return self


class AppointmentIn(Strict):
    program_id: Id
    patient_id: Id
    clinician_id: Id
    # "family": the patient's support person may join too, by their own link.
    kind: Literal["individual", "family"] = "individual"
    template: Slug | None = None  # None: the kind's default ("individual-50", "family-50")
    starts_at: dt.datetime
    minutes: Annotated[int, Field(ge=5, le=240)] = 50

    @model_validator(mode="after")
    def _aware(self) -> AppointmentIn:
        if self.starts_at.tzinfo is None:
            raise ValueError("starts_at needs a time zone offset, e.g. 2026-12-01T10:00:00-08:00")
        return self


class DirectoryLookupIn(Strict):
    """A confirmed location to resolve in the emergency directory."""

    zip: Annotated[str, StringConstraints(pattern=r"^\d{5}(-\d{4})?$")] | None = None
    county: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    state: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None

    @model_validator(mode="after")
    def _some_place(self) -> DirectoryLookupIn:
        if self.zip is None and self.county is None:
            raise ValueError("give a zip, a county or both")
        return self
