"""A crisis event and its timeline: what each step holds, and what the event's state allows.

The timeline is append-only (CLINICAL.md section 7, step 6): a correction is an
`amendment` step that names the step it corrects, never an edit. Storage seals every
step's payload (numbers, agencies and notes are PHI-adjacent) and hash-chains the rows.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from crisis.routing import NOTIFY_ROLES

STATES = ("open", "acknowledged", "closed")
TRIGGERS = ("screening", "clinician_flag", "help_button", "silence")
DISPOSITIONS = (
    "safe_at_home_with_plan",
    "support_person_with_patient",
    "mobile_crisis_dispatched",
    "warm_handoff_988",
    "emergency_services_dispatched",
    "transported_to_ed",
    "welfare_check_requested",
    "other",
)
TARASOFF_METHODS = ("phone", "in_person", "written", "law_enforcement")
# CLINICAL.md 7.5: when a flagged patient's video drops, call back on the session phone,
# then the backup and alternate phones (as the telehealth and emergency-plan consents
# promise), then the support person, then a welfare check through the local dispatch center.
DROP_ACTIONS = ("call_back", "backup_phone", "support_person", "welfare_check")
DROP_OUTCOMES = ("taken", "skipped")
FOLLOW_UP_DEFAULT = dt.timedelta(hours=24)  # CLINICAL.md section 7: default within 24 h
MAX_NOTE = 4000
MAX_SHORT = 200
_PHONE_CHARS = re.compile(r"[\s().+\-]")


class LedgerError(Exception):
    """Base for refusals from the crisis ledger."""


class InvalidStepError(LedgerError):
    """A step whose fields do not hold; `field` names the first one at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidStateError(LedgerError):
    """A step the event's current state does not allow (e.g. acknowledging a closed event)."""


# Field readers ---------------------------------------------------------------------------


def _text(
    data: Mapping[str, Any], name: str, *, limit: int = MAX_SHORT, required: bool = True
) -> str:
    raw = data.get(name)
    if raw is None or raw == "":
        if required:
            raise InvalidStepError(name, "is required")
        return ""
    if not isinstance(raw, str):
        raise InvalidStepError(name, "must be text")
    value = raw.strip()
    if required and not value:
        raise InvalidStepError(name, "is required")
    if len(value) > limit:
        raise InvalidStepError(name, f"must be at most {limit} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise InvalidStepError(name, "must not contain control characters")
    return value


def _phone(data: Mapping[str, Any], name: str) -> str:
    value = _text(data, name, limit=32)
    digits = _PHONE_CHARS.sub("", value)
    # Short codes (911, 988) and full numbers, national or international, all occur.
    if not digits.isdigit() or not 3 <= len(digits) <= 15:
        raise InvalidStepError(name, "must be a phone number (3 to 15 digits)")
    return value


def _time(data: Mapping[str, Any], name: str, *, required: bool = True) -> dt.datetime | None:
    raw = data.get(name)
    if raw is None or raw == "":
        if required:
            raise InvalidStepError(name, "is required")
        return None
    if isinstance(raw, dt.datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidStepError(
                name, "must be a date and time like 2026-12-01T18:30:00Z"
            ) from None
    else:
        raise InvalidStepError(name, "must be a date and time")
    if value.tzinfo is None:
        raise InvalidStepError(name, "must include a time zone offset")
    return value.astimezone(dt.UTC)


def _required_time(data: Mapping[str, Any], name: str) -> dt.datetime:
    value = _time(data, name)
    assert value is not None  # _time raises for a missing required value
    return value


def _choice(data: Mapping[str, Any], name: str, options: tuple[str, ...]) -> str:
    value = data.get(name)
    if value not in options:
        raise InvalidStepError(name, f"must be one of {', '.join(options)}")
    return str(value)


def _no_extra(data: Mapping[str, Any], names: tuple[str, ...]) -> None:
    unknown = set(data) - set(names)
    if unknown:
        raise InvalidStepError(sorted(unknown)[0], "is not a field of this step")


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


# Steps -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepBase:
    """Common behaviour: the payload a step stores (datetimes as ISO 8601 UTC)."""

    KIND: ClassVar[str] = ""

    def payload(self) -> dict[str, Any]:
        """The step's fields as JSON-ready values."""
        out: dict[str, Any] = {}
        for name, value in asdict(self).items():
            out[name] = _iso(value) if isinstance(value, dt.datetime) else value
        return out


@dataclass(frozen=True, slots=True)
class Raised(StepBase):
    """The concern that opened the event."""

    KIND: ClassVar[str] = "raised"
    trigger: str
    level: str
    rule: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConcernAdded(StepBase):
    """A further concern about the same patient in the same session, while the event is open.

    One patient, one incident, one timeline: a second trigger (the help button after a
    high screen, say) belongs on the event already being handled, not on a second event
    that would page the same people again and split the record.
    """

    KIND: ClassVar[str] = "concern_added"
    trigger: str
    level: str
    rule: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LevelRaised(StepBase):
    """A later concern outranked the event's level; routing restarts at the new level."""

    KIND: ClassVar[str] = "level_raised"
    from_level: str
    to_level: str


@dataclass(frozen=True, slots=True)
class Notified(StepBase):
    """A role was paged (staff id when the roster names someone)."""

    KIND: ClassVar[str] = "notified"
    role: str
    staff_id: str | None
    reason: str  # raised | repage | escalation | level_raised


@dataclass(frozen=True, slots=True)
class DeadlineMissed(StepBase):
    """An acknowledgement deadline passed: who was due, and when."""

    KIND: ClassVar[str] = "deadline_missed"
    purpose: str
    due_at: dt.datetime
    waiting_on: list[str]
    staff_ids: list[str]


@dataclass(frozen=True, slots=True)
class Acknowledged(StepBase):
    """A named staff member took the event (the actor of the step)."""

    KIND: ClassVar[str] = "acknowledged"
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> Acknowledged:
        _no_extra(data, ("note",))
        return cls(_text(data, "note", limit=MAX_NOTE, required=False))


@dataclass(frozen=True, slots=True)
class Assigned(StepBase):
    """Someone now carries the event: the actor took it over, or handed it to `staff_id`."""

    KIND: ClassVar[str] = "assigned"
    staff_id: str
    previous: str | None = None
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> Assigned:
        _no_extra(data, ("staff_id", "previous", "note"))
        previous = data.get("previous")
        if previous is not None and not isinstance(previous, str):
            raise InvalidStepError("previous", "must be text")
        return cls(
            _text(data, "staff_id", limit=64),
            previous,
            _text(data, "note", limit=MAX_NOTE, required=False),
        )


@dataclass(frozen=True, slots=True)
class PrivateRoomOpened(StepBase):
    """A clinician took the patient to a private room."""

    KIND: ClassVar[str] = "private_room_opened"
    room_id: str = ""
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> PrivateRoomOpened:
        _no_extra(data, ("room_id", "note"))
        return cls(
            _text(data, "room_id", limit=64, required=False),
            _text(data, "note", limit=MAX_NOTE, required=False),
        )


@dataclass(frozen=True, slots=True)
class CallLogged(StepBase):
    """An external call: number, agency, incident number, start and end, outcome."""

    KIND: ClassVar[str] = "call_logged"
    number: str
    agency: str
    incident_number: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    outcome: str

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> CallLogged:
        _no_extra(
            data, ("number", "agency", "incident_number", "started_at", "ended_at", "outcome")
        )
        number = _phone(data, "number")
        agency = _text(data, "agency")
        incident = _text(data, "incident_number", limit=64, required=False)
        started = _required_time(data, "started_at")
        ended = _time(data, "ended_at", required=False)
        if ended is not None and ended < started:
            raise InvalidStepError("ended_at", "must not be before started_at")
        return cls(
            number,
            agency,
            incident,
            started,
            ended,
            _text(data, "outcome", limit=MAX_NOTE, required=False),
        )


@dataclass(frozen=True, slots=True)
class SupportPersonContacted(StepBase):
    """The patient's support person was called under the patient's release."""

    KIND: ClassVar[str] = "support_person_contacted"
    reached: bool
    contacted_at: dt.datetime
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> SupportPersonContacted:
        _no_extra(data, ("reached", "contacted_at", "note"))
        reached = data.get("reached")
        if not isinstance(reached, bool):
            raise InvalidStepError("reached", "must be true or false")
        contacted = _time(data, "contacted_at", required=False) or at
        return cls(reached, contacted, _text(data, "note", limit=MAX_NOTE, required=False))


@dataclass(frozen=True, slots=True)
class Disposition(StepBase):
    """Where the patient ended up."""

    KIND: ClassVar[str] = "disposition"
    disposition: str
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> Disposition:
        _no_extra(data, ("disposition", "note"))
        return cls(
            _choice(data, "disposition", DISPOSITIONS),
            _text(data, "note", limit=MAX_NOTE, required=False),
        )


@dataclass(frozen=True, slots=True)
class Part2Disclosure(StepBase):
    """42 CFR 2.51 medical-emergency disclosure: recipient and facility, who disclosed,
    when, and the nature of the emergency (only in substance-use programs)."""

    KIND: ClassVar[str] = "part2_disclosure"
    recipient: str
    facility: str
    disclosed_by: str
    disclosed_at: dt.datetime
    nature_of_emergency: str

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> Part2Disclosure:
        _no_extra(
            data, ("recipient", "facility", "disclosed_by", "disclosed_at", "nature_of_emergency")
        )
        return cls(
            _text(data, "recipient"),
            _text(data, "facility"),
            _text(data, "disclosed_by"),
            _required_time(data, "disclosed_at"),
            _text(data, "nature_of_emergency", limit=MAX_NOTE),
        )


@dataclass(frozen=True, slots=True)
class TarasoffNotification(StepBase):
    """A duty-to-warn/protect notification: to whom, how, when."""

    KIND: ClassVar[str] = "tarasoff_notification"
    recipient: str
    method: str
    notified_at: dt.datetime
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> TarasoffNotification:
        _no_extra(data, ("recipient", "method", "notified_at", "note"))
        return cls(
            _text(data, "recipient"),
            _choice(data, "method", TARASOFF_METHODS),
            _required_time(data, "notified_at"),
            _text(data, "note", limit=MAX_NOTE, required=False),
        )


@dataclass(frozen=True, slots=True)
class FollowUpTask(StepBase):
    """Who follows up, by when (default: within 24 hours of being recorded)."""

    KIND: ClassVar[str] = "follow_up_task"
    due_at: dt.datetime
    assignee_id: str
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> FollowUpTask:
        _no_extra(data, ("due_at", "assignee_id", "note"))
        due = _time(data, "due_at", required=False) or at + FOLLOW_UP_DEFAULT
        if due < at:
            raise InvalidStepError("due_at", "must be in the future")
        return cls(
            due,
            _text(data, "assignee_id", limit=36, required=False),
            _text(data, "note", limit=MAX_NOTE, required=False),
        )


@dataclass(frozen=True, slots=True)
class DebriefNote(StepBase):
    """The group debrief after the event (what the group was told, how it went)."""

    KIND: ClassVar[str] = "debrief_note"
    note: str

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> DebriefNote:
        _no_extra(data, ("note",))
        return cls(_text(data, "note", limit=MAX_NOTE))


@dataclass(frozen=True, slots=True)
class DropFollowUp(StepBase):
    """One step of the dropped-connection prompt, taken or skipped (with the reason)."""

    KIND: ClassVar[str] = "drop_follow_up"
    action: str
    outcome: str
    reason: str = ""
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> DropFollowUp:
        _no_extra(data, ("action", "outcome", "reason", "note"))
        action = _choice(data, "action", DROP_ACTIONS)
        outcome = _choice(data, "outcome", DROP_OUTCOMES)
        # A skipped step without a reason is a gap in the record nobody can review.
        reason = _text(data, "reason", limit=MAX_NOTE, required=outcome == "skipped")
        return cls(action, outcome, reason, _text(data, "note", limit=MAX_NOTE, required=False))


@dataclass(frozen=True, slots=True)
class Note(StepBase):
    """A note by someone on the event while it is handled (what was seen, what is next)."""

    KIND: ClassVar[str] = "note"
    note: str

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> Note:
        _no_extra(data, ("note",))
        return cls(_text(data, "note", limit=MAX_NOTE))


@dataclass(frozen=True, slots=True)
class Amendment(StepBase):
    """A correction to an earlier step, which stays as it was."""

    KIND: ClassVar[str] = "amendment"
    amends: int
    reason: str
    correction: str

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> Amendment:
        _no_extra(data, ("amends", "reason", "correction"))
        amends = data.get("amends")
        if isinstance(amends, bool) or not isinstance(amends, int) or amends < 1:
            raise InvalidStepError("amends", "must be the number of an earlier step")
        return cls(
            amends, _text(data, "reason", limit=MAX_NOTE), _text(data, "correction", limit=MAX_NOTE)
        )


@dataclass(frozen=True, slots=True)
class SignedOff(StepBase):
    """A supervisor reviewed the event and closed it."""

    KIND: ClassVar[str] = "signed_off"
    note: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], at: dt.datetime) -> SignedOff:
        _no_extra(data, ("note",))
        return cls(_text(data, "note", limit=MAX_NOTE, required=False))


Step = (
    Raised
    | ConcernAdded
    | LevelRaised
    | Notified
    | DeadlineMissed
    | Acknowledged
    | Assigned
    | PrivateRoomOpened
    | CallLogged
    | SupportPersonContacted
    | Disposition
    | Part2Disclosure
    | TarasoffNotification
    | FollowUpTask
    | DebriefNote
    | DropFollowUp
    | Note
    | Amendment
    | SignedOff
)

# Steps staff record through the timeline route; the rest are written by the system or by
# their own routes (acknowledge, sign off) so their state rules cannot be skipped.
RECORDED_BY_STAFF: dict[str, Callable[[Mapping[str, Any], dt.datetime], Step]] = {
    PrivateRoomOpened.KIND: PrivateRoomOpened.parse,
    CallLogged.KIND: CallLogged.parse,
    SupportPersonContacted.KIND: SupportPersonContacted.parse,
    Disposition.KIND: Disposition.parse,
    Part2Disclosure.KIND: Part2Disclosure.parse,
    TarasoffNotification.KIND: TarasoffNotification.parse,
    FollowUpTask.KIND: FollowUpTask.parse,
    DebriefNote.KIND: DebriefNote.parse,
    DropFollowUp.KIND: DropFollowUp.parse,
    Note.KIND: Note.parse,
    Amendment.KIND: Amendment.parse,
}
# After sign-off the record is closed, except that the debrief and corrections still come.
AFTER_CLOSE = frozenset({DebriefNote.KIND, Amendment.KIND, FollowUpTask.KIND})
ALL_KINDS = (
    Raised.KIND,
    ConcernAdded.KIND,
    LevelRaised.KIND,
    Notified.KIND,
    DeadlineMissed.KIND,
    Acknowledged.KIND,
    Assigned.KIND,
    SignedOff.KIND,
    *RECORDED_BY_STAFF,
)


def parse_staff_step(
    kind: str, data: Mapping[str, Any], at: dt.datetime, *, substance_use: bool
) -> Step:
    """A staff-recorded step from its submitted fields, validated."""
    parse = RECORDED_BY_STAFF.get(kind)
    if parse is None:
        raise InvalidStepError("kind", f"must be one of {', '.join(RECORDED_BY_STAFF)}")
    # Part 2 governs substance-use programs only; elsewhere this form has no meaning.
    if kind == Part2Disclosure.KIND and not substance_use:
        raise InvalidStepError("kind", "Part 2 disclosures apply to substance-use programs only")
    return parse(data, at)


def check_can_append(state: str, step: Step, last_step_no: int) -> None:
    """Refuse a step the event's state does not allow."""
    if state not in STATES:
        raise InvalidStateError(f"unknown state {state!r}")
    if state == "closed" and step.KIND not in AFTER_CLOSE:
        raise InvalidStateError("the event is signed off; add an amendment instead")
    if isinstance(step, Amendment) and step.amends > last_step_no:
        raise InvalidStepError("amends", "must be the number of an earlier step")
    if isinstance(step, Notified) and step.role not in NOTIFY_ROLES:
        raise InvalidStepError("role", "unknown role")


def check_can_acknowledge(state: str) -> None:
    """Only an open event can be acknowledged; the first acknowledgement stands."""
    if state == "acknowledged":
        raise InvalidStateError("the event is already acknowledged")
    if state == "closed":
        raise InvalidStateError("the event is signed off")


def check_can_assign(state: str) -> None:
    """A signed-off event is nobody's to carry any more."""
    if state == "closed":
        raise InvalidStateError("the event is signed off")


def check_can_sign_off(state: str, kinds: list[str]) -> None:
    """Sign-off closes a handled event: acknowledged, with a disposition on record."""
    if state == "closed":
        raise InvalidStateError("the event is already signed off")
    if state == "open":
        raise InvalidStateError("acknowledge the event before signing it off")
    if Disposition.KIND not in kinds:
        raise InvalidStateError("record a disposition before signing off")


def state_after(state: str, step: Step) -> str:
    """The event's state once `step` is on its timeline."""
    if isinstance(step, Acknowledged):
        return "acknowledged"
    if isinstance(step, SignedOff):
        return "closed"
    return state


@dataclass(frozen=True, slots=True)
class Event:
    """One crisis event's header row (the timeline is its steps)."""

    id: str
    program_id: str
    session_id: str
    patient_id: str
    trigger: str
    level: str
    state: str
    raised_at: dt.datetime
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: str | None = None
    signed_off_at: dt.datetime | None = None
    signed_off_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The header as JSON-ready values (ids and times only, no PHI)."""
        return {
            "id": self.id,
            "program_id": self.program_id,
            "session_id": self.session_id,
            "patient_id": self.patient_id,
            "trigger": self.trigger,
            "level": self.level,
            "state": self.state,
            "raised_at": _iso(self.raised_at),
            "acknowledged_at": _iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "signed_off_at": _iso(self.signed_off_at),
            "signed_off_by": self.signed_off_by,
        }
