import datetime as dt
from pathlib import Path

import pytest

from rooms.consent import (
    KINDS,
    Standing,
    TemplateError,
    current_consents,
    gate,
    parse_document,
    required_kinds,
)

SHIPPED = Path(__file__).resolve().parents[2] / "web" / "consent" / "en"
T = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def test_defaults_follow_the_session_type_and_program_kind() -> None:
    assert required_kinds("group", "mental_health", None, False) == (
        "telehealth",
        "group_confidentiality",
        "emergency_plan",
    )
    assert required_kinds("individual", "mental_health", None, False) == (
        "telehealth",
        "emergency_plan",
    )
    assert required_kinds("individual", "substance_use", None, False)[-1] == "part2"
    assert required_kinds("group", "mental_health", ["telehealth"], True) == (
        "telehealth",
        "recording",
    )
    # Recording is never required unless the program turns it on.
    assert "recording" not in required_kinds("group", "x", ["telehealth", "recording"], False)


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_document_parses_with_acknowledgements_and_placeholders(kind: str) -> None:
    document = parse_document((SHIPPED / f"{kind}.md").read_text())
    assert document.title and len(document.acknowledgements) >= 3
    filled = document.filled(
        {
            "program_name": "North IOP",
            "program_phone": "(555) 010-0100",
            "clinician_name": "Dr Example",
            "clinician_licence": "LMFT 1",
        }
    )
    assert "{" not in filled.text()
    assert filled.sha256() != document.sha256()
    assert parse_document(filled.text()) == filled


@pytest.mark.parametrize(
    "source",
    [
        "no title",
        "# T\n\nbody only",
        "# T\n\nbody\n\n## You confirm\n",
        "# T\n\n## You confirm\n- x",
    ],
)
def test_malformed_documents_are_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        parse_document(source)


def test_replay_supersedes_and_revocation_and_the_gate() -> None:
    events = [
        {
            "seq": 1,
            "kind": "telehealth",
            "event": "consented",
            "template_version": 1,
            "consented_at": T,
            "method": "e_signature",
            "revokes": None,
        },
        {
            "seq": 2,
            "kind": "emergency_plan",
            "event": "consented",
            "template_version": 1,
            "consented_at": T,
            "method": "verbal_attested",
            "revokes": None,
        },
        {
            "seq": 3,
            "kind": "telehealth",
            "event": "consented",
            "template_version": 2,
            "consented_at": T,
            "method": "e_signature",
            "revokes": None,
        },
        {"seq": 4, "kind": "telehealth", "event": "revoked", "revokes": 1},  # old one: no effect
        {"seq": 5, "kind": "emergency_plan", "event": "revoked", "revokes": 2},
        {"seq": 6, "kind": "group_confidentiality", "event": "refused"},
    ]
    current = current_consents(events)
    assert current == {"telehealth": Standing("telehealth", 3, 2, T, "e_signature")}
    required = ("telehealth", "group_confidentiality", "emergency_plan")
    missing = gate(required, current, {"telehealth": 2})
    assert [(m.kind, m.reason) for m in missing] == [
        ("group_confidentiality", "missing"),
        ("emergency_plan", "missing"),
    ]
    assert [m.reason for m in gate(("telehealth",), current, {"telehealth": 3})] == ["new_version"]
