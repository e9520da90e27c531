import datetime as dt
from pathlib import Path

import pytest

from rooms.consent import (
    KINDS,
    Missing,
    Standing,
    TemplateError,
    answered_versions,
    current_consents,
    gate,
    offered_kinds,
    parse_document,
    required_kinds,
    unanswered_offers,
)

SHIPPED = Path(__file__).resolve().parents[2] / "web" / "consent" / "en"
T = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def test_defaults_follow_the_session_type() -> None:
    assert required_kinds("group", None) == (
        "telehealth",
        "group_confidentiality",
        "emergency_plan",
    )
    assert required_kinds("individual", None) == ("telehealth", "emergency_plan")
    assert required_kinds("group", ["telehealth"]) == ("telehealth",)


def test_part2_and_recording_are_offered_never_required() -> None:
    # 42 CFR Part 2: treatment may not depend on consent to disclose; recording is optional.
    assert "part2" not in required_kinds("individual", None)
    assert required_kinds("group", ["telehealth", "part2", "recording"]) == ("telehealth",)
    assert offered_kinds("substance_use", None, recording=False) == ("part2",)
    assert offered_kinds("mental_health", None, recording=True) == ("recording",)
    assert offered_kinds("mental_health", ["telehealth", "part2"], recording=False) == ("part2",)
    assert offered_kinds("mental_health", None, recording=False) == ()


def test_an_offer_once_answered_either_way_is_not_asked_again_until_a_new_version() -> None:
    events = [
        {"kind": "recording", "event": "refused", "template_version": 1},
        {"kind": "part2", "event": "consented", "template_version": 1},
    ]
    answered = answered_versions(events)
    assert unanswered_offers(("part2", "recording"), answered, {}) == []
    assert unanswered_offers(("part2", "recording"), answered, {"part2": 2}) == [
        Missing("part2", "optional")
    ]
    assert unanswered_offers(("recording",), {}, {}) == [Missing("recording", "optional")]


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
