"""The staff-recorded crisis steps as forms: their fields, and a submitted form's values.

The ledger validates; these only lay the forms out and turn form text into field values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from crisis import ledger
from rooms.schedule import zone


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One input of a step form."""

    name: str
    label: str
    kind: str = "text"  # text | tel | datetime | textarea | select | yesno | number
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()


def _choices(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((value, value.replace("_", " ")) for value in values)


NOTE = FieldSpec("note", "Note", "textarea")
# The staff-recorded steps, in the order a crisis usually runs; fields as crisis/ledger.py
# declares them (the ledger validates; these only lay the forms out).
STEP_FORMS: dict[str, tuple[str, tuple[FieldSpec, ...]]] = {
    ledger.CallLogged.KIND: (
        "Log an external call",
        (
            FieldSpec("number", "Number dialled", "tel", True),
            FieldSpec("agency", "Agency (e.g. county dispatch, mobile crisis, 988)", required=True),
            FieldSpec("incident_number", "Incident number"),
            FieldSpec("started_at", "Call started", "datetime", True),
            FieldSpec("ended_at", "Call ended", "datetime"),
            FieldSpec("outcome", "Outcome", "textarea"),
        ),
    ),
    ledger.SupportPersonContacted.KIND: (
        "Support person contacted",
        (
            FieldSpec("reached", "Reached them?", "yesno", True),
            FieldSpec("contacted_at", "When (blank: now)", "datetime"),
            NOTE,
        ),
    ),
    ledger.DropFollowUp.KIND: (
        "Dropped connection: step taken or skipped",
        (
            FieldSpec(
                "action",
                "Step",
                "select",
                True,
                (
                    ("call_back", "call back on the session phone"),
                    ("backup_phone", "call the backup or alternate phone"),
                    ("support_person", "call the support person"),
                    ("welfare_check", "welfare check through local dispatch"),
                ),
            ),
            FieldSpec("outcome", "Outcome", "select", True, _choices(ledger.DROP_OUTCOMES)),
            FieldSpec("reason", "Reason (required when skipped)", "textarea"),
            NOTE,
        ),
    ),
    ledger.Disposition.KIND: (
        "Disposition",
        (
            FieldSpec("disposition", "Disposition", "select", True, _choices(ledger.DISPOSITIONS)),
            NOTE,
        ),
    ),
    ledger.Part2Disclosure.KIND: (
        "42 CFR Part 2 medical-emergency disclosure",
        (
            FieldSpec("recipient", "Recipient (person)", required=True),
            FieldSpec("facility", "Facility", required=True),
            FieldSpec("disclosed_by", "Disclosed by", required=True),
            FieldSpec("disclosed_at", "Date and time of disclosure", "datetime", True),
            FieldSpec("nature_of_emergency", "Nature of the emergency", "textarea", True),
        ),
    ),
    ledger.TarasoffNotification.KIND: (
        "Duty to warn / protect (Tarasoff) notification",
        (
            FieldSpec("recipient", "Who was notified", required=True),
            FieldSpec("method", "How", "select", True, _choices(ledger.TARASOFF_METHODS)),
            FieldSpec("notified_at", "When", "datetime", True),
            NOTE,
        ),
    ),
    ledger.FollowUpTask.KIND: (
        "Follow-up task",
        (
            FieldSpec("due_at", "Due (default: in 24 hours)", "datetime"),
            FieldSpec("assignee_id", "Who follows up", "select"),
            NOTE,
        ),
    ),
    ledger.DebriefNote.KIND: (
        "Group debrief note",
        (FieldSpec("note", "What the group was told and how it went", "textarea", True),),
    ),
    ledger.Amendment.KIND: (
        "Amend an earlier step (the original stays)",
        (
            FieldSpec("amends", "Step number", "number", True),
            FieldSpec("reason", "Reason for the amendment", "textarea", True),
            FieldSpec("correction", "Correction", "textarea", True),
        ),
    ),
}
DATETIME_FORMAT = "%Y-%m-%dT%H:%M"


class FormError(Exception):
    """A submitted value that cannot even be handed to the ledger."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def step_data(
    kind: str, form: Any, time_zone: str, *, default_assignee: str = ""
) -> dict[str, Any]:
    """A step form's text as the ledger's field values (local times given their zone)."""
    _title, specs = STEP_FORMS[kind]
    data: dict[str, Any] = {}
    for spec in specs:
        raw = str(form.get(f"{kind}.{spec.name}", "")).strip()
        if spec.kind == "datetime":
            if not raw:
                continue
            try:
                moment = dt.datetime.fromisoformat(raw)
            except ValueError:
                raise FormError(spec.name, "a date and time, like 2026-12-01 18:30") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone(time_zone))
            data[spec.name] = moment.isoformat()
        elif spec.kind == "yesno":
            if raw not in ("yes", "no"):
                raise FormError(spec.name, "choose yes or no")
            data[spec.name] = raw == "yes"
        elif spec.kind == "number":
            if not raw.isdigit():
                raise FormError(spec.name, "a step number from the timeline")
            data[spec.name] = int(raw)
        elif spec.name == "assignee_id":
            data[spec.name] = raw or default_assignee
        elif raw:
            data[spec.name] = raw
    return data
