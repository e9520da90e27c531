"""Consent: the kinds, what each session requires, template documents, and the gate rule."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = (
    "telehealth",
    "group_confidentiality",
    "emergency_plan",
    "part2",
    "recording",
    "family_release",
    "family_participant",
)
# Family sessions: the patient's release for their support person, and the support
# person's own consent (signed by them, kept in the patient's ledger with their role).
FAMILY_KINDS = ("family_release", "family_participant")
SUPPORT_PERSON_KINDS = frozenset({"family_participant"})
PATIENT_KINDS = tuple(kind for kind in KINDS if kind not in SUPPORT_PERSON_KINDS)
METHODS = ("e_signature", "verbal_attested", "paper_scanned")
KIND_TITLES = {
    "telehealth": "Telehealth",
    "group_confidentiality": "Group privacy agreement",
    "emergency_plan": "Emergency plan and support person",
    "part2": "Sharing substance use treatment information (42 CFR Part 2)",
    "recording": "Recording",
    "family_release": "Family session release for my support person",
    "family_participant": "Support person joining a family session",
}
_PLACEHOLDER = re.compile(r"\{(program_name|program_phone|clinician_name|clinician_licence)\}")
_ACK = re.compile(r"^- \[ \] (.+)$")
ACK_HEADING = "## You confirm"


class TemplateError(ValueError):
    """A consent document that cannot be used."""


@dataclass(frozen=True, slots=True)
class Document:
    """A consent document: title, Markdown body, and the acknowledgements to tick."""

    title: str
    body: str
    acknowledgements: tuple[str, ...]

    def text(self) -> str:
        """The exact text shown, in one canonical form (what the hash covers)."""
        acks = "\n".join(f"- [ ] {ack}" for ack in self.acknowledgements)
        return f"# {self.title}\n\n{self.body.strip()}\n\n{ACK_HEADING}\n{acks}\n"

    def sha256(self) -> str:
        """SHA-256 of `text()`."""
        return hashlib.sha256(self.text().encode("utf-8")).hexdigest()

    def filled(self, values: Mapping[str, str]) -> Document:
        """The document with program and clinician details filled in."""

        def put(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

        return Document(
            put(self.title), put(self.body), tuple(put(a) for a in self.acknowledgements)
        )


def parse_document(source: str) -> Document:
    """Read a document: `# Title`, the body, then `## You confirm` and `- [ ] ...` lines."""
    lines = source.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise TemplateError("a consent document starts with '# Title'")
    title = lines[0][2:].strip()
    try:
        split = lines.index(ACK_HEADING)
    except ValueError:
        raise TemplateError(f"a consent document ends with '{ACK_HEADING}'") from None
    acknowledgements = []
    for line in lines[split + 1 :]:
        if not line.strip():
            continue
        match = _ACK.match(line)
        if match is None:
            raise TemplateError("after 'You confirm' every line is '- [ ] statement'")
        acknowledgements.append(match.group(1).strip())
    if not acknowledgements:
        raise TemplateError("a consent document needs at least one acknowledgement")
    body = "\n".join(lines[1:split]).strip()
    if not body:
        raise TemplateError("a consent document needs a body")
    return Document(title, body, tuple(acknowledgements))


# Consents a patient is asked for that never stand between her and the room. Recording:
# the text promises care is the same without it (and the platform has no recorder).
# Part 2: 42 CFR Part 2 does not let a program condition treatment on consent to disclose.
OPTIONAL = frozenset({"part2", "recording"})


def required_kinds(session_kind: str, configured: Sequence[str] | None) -> tuple[str, ...]:
    """The consents a session needs before entry: the program's list, or the defaults."""
    if configured is not None:
        kinds = list(configured)
    elif session_kind == "group":
        kinds = ["telehealth", "group_confidentiality", "emergency_plan"]
    else:
        kinds = ["telehealth", "emergency_plan"]
    if session_kind == "family" and "family_release" not in kinds:
        # A family session never opens without the patient's release for the support person.
        kinds.append("family_release")
    return tuple(k for k in kinds if k not in OPTIONAL and k not in SUPPORT_PERSON_KINDS)


def offered_kinds(
    program_kind: str, configured: Sequence[str] | None, recording: bool
) -> tuple[str, ...]:
    """The optional consents a session asks for: the patient may decline and still enter."""
    kinds = []
    if program_kind == "substance_use" or (configured is not None and "part2" in configured):
        kinds.append("part2")
    if recording:  # never offered unless the program enables it
        kinds.append("recording")
    return tuple(kinds)


@dataclass(frozen=True, slots=True)
class Standing:
    """A patient's current consent of one kind."""

    kind: str
    seq: int
    version: int
    consented_at: dt.datetime
    method: str


def current_consents(events: Iterable[Mapping[str, Any]]) -> dict[str, Standing]:
    """Replay a patient's ledger rows (in order) into their current consent per kind."""
    current: dict[str, Standing] = {}
    for event in events:
        kind = event["kind"]
        if event["event"] == "consented":
            current[kind] = Standing(
                kind,
                int(event["seq"]),
                int(event["template_version"]),
                event["consented_at"],
                event["method"],
            )
        elif event["event"] == "revoked":
            standing = current.get(kind)
            if standing is not None and standing.seq == event["revokes"]:
                del current[kind]
    return current


@dataclass(frozen=True, slots=True)
class Missing:
    """A consent the gate is waiting for, and why."""

    kind: str
    reason: str  # "missing" | "new_version" | "optional"


def gate(
    required: Sequence[str], current: Mapping[str, Standing], minimum: Mapping[str, int]
) -> list[Missing]:
    """What stands between a patient and the room: missing or outdated consents."""
    missing = []
    for kind in required:
        standing = current.get(kind)
        if standing is None:
            missing.append(Missing(kind, "missing"))
        elif standing.version < minimum.get(kind, 1):
            missing.append(Missing(kind, "new_version"))
    return missing


def answered_versions(events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Per kind, the newest document version the patient answered, agreeing or declining."""
    found: dict[str, int] = {}
    for event in events:
        if event["event"] in ("consented", "refused") and event.get("template_version"):
            kind = event["kind"]
            found[kind] = max(found.get(kind, 0), int(event["template_version"]))
    return found


def unanswered_offers(
    offered: Sequence[str], answered: Mapping[str, int], minimum: Mapping[str, int]
) -> list[Missing]:
    """Optional consents still to ask for: never answered, or changed since (re-consent)."""
    return [
        Missing(kind, "optional")
        for kind in offered
        if answered.get(kind, 0) < minimum.get(kind, 1)
    ]


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes a ledger row's hash covers (sorted keys, UTC times, no whitespace)."""

    def value(item: Any) -> Any:
        if isinstance(item, dt.datetime):
            return item.astimezone(dt.UTC).isoformat(timespec="microseconds")
        return item

    return json.dumps(
        {key: value(item) for key, item in fields.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode("ascii")


def row_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """SHA-256 over the previous row's hash and this row's canonical fields."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(fields)).hexdigest()
