"""The homework library and the validation of a patient's answers (domain, no server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.worksheets import (
    FREE_TEXT,
    LIBRARY,
    AnswersInvalid,
    FieldKind,
    UnknownWorksheet,
    labelled,
    library_for,
    offered,
    parse_answers,
    parse_instructions,
    worksheet,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_urge_log_is_offered_only_to_substance_use_programs() -> None:
    keys = {sheet.key for sheet in library_for(substance_use=False)}
    assert keys == {"thought_record", "activation_plan", "diary_card"}
    assert "urge_log" in {sheet.key for sheet in library_for(substance_use=True)}
    with pytest.raises(UnknownWorksheet):
        offered("urge_log", substance_use=False)
    assert offered("urge_log", substance_use=True).title == "Urge log"
    assert offered(FREE_TEXT, substance_use=False).key == FREE_TEXT
    with pytest.raises(UnknownWorksheet):
        offered("nonsense", substance_use=True)


def test_every_worksheet_has_unique_fields_and_something_required() -> None:
    for sheet in LIBRARY:
        names = [item.name for item in sheet.fields]
        assert len(names) == len(set(names)), sheet.key
        assert any(item.required for item in sheet.fields), sheet.key
        for item in sheet.fields:
            assert item.label
            if item.kind is FieldKind.CHOICE:
                assert item.options


def test_a_draft_keeps_what_is_there_and_hand_in_needs_the_required_fields() -> None:
    sheet = worksheet("thought_record")
    assert parse_answers(sheet, {"situation": "  at work  "}, hand_in=False) == {
        "situation": "at work"
    }
    with pytest.raises(AnswersInvalid) as missing:
        parse_answers(sheet, {"situation": "at work"}, hand_in=True)
    assert set(missing.value.errors) == {"thought", "emotion", "intensity_before", "balanced"}
    with pytest.raises(AnswersInvalid) as nothing:
        parse_answers(sheet, {}, hand_in=False)
    assert "situation" in nothing.value.errors


def test_numbers_choices_lengths_and_unknown_fields_are_refused_with_a_reason() -> None:
    sheet = worksheet("urge_log")
    with pytest.raises(AnswersInvalid) as bad:
        parse_answers(
            sheet,
            {"strength": "11", "response": "flew", "trigger": "x" * 2001, "extra": "1"},
            hand_in=False,
        )
    assert bad.value.errors == {
        "extra": "is not a question of this worksheet",
        "strength": "Choose a whole number from 0 to 10.",
        "response": "Choose one of the options.",
        "trigger": "Keep this to 2000 characters (it has 2001).",
    }
    for odd in ("-1", "1.5", "５", "ten"):
        with pytest.raises(AnswersInvalid):
            parse_answers(sheet, {"strength": odd}, hand_in=False)
    assert parse_answers(sheet, {"strength": "10"}, hand_in=False) == {"strength": 10}


def test_a_free_text_task_must_say_what_to_do() -> None:
    with pytest.raises(AnswersInvalid):
        parse_instructions(FREE_TEXT, "   ")
    assert parse_instructions("thought_record", "") == ""
    assert parse_instructions(FREE_TEXT, " Walk daily ") == "Walk daily"
    with pytest.raises(AnswersInvalid):
        parse_instructions(FREE_TEXT, "x" * 2001)


def test_answers_are_shown_with_their_labels_in_order() -> None:
    sheet = worksheet("urge_log")
    shown = labelled(sheet, {"response": "rode_it_out", "strength": 7})
    assert shown[0] == ("When", "\u2014")
    assert ("What you did", "Rode it out") in shown
    assert ("How strong was the urge (0-10)?", "7") in shown


@given(st.dictionaries(st.sampled_from(["situation", "intensity_before", "other"]), st.text()))
def test_parsing_answers_never_fails_other_than_with_reasons(data: dict[str, str]) -> None:
    try:
        parse_answers(worksheet("thought_record"), data, hand_in=True)
    except AnswersInvalid as exc:
        assert exc.errors


def test_the_care_domain_imports_no_web_or_storage_library() -> None:
    probe = (
        "import sys, care, care.worksheets\n"
        "print(','.join(m for m in ('aiohttp', 'aiortc', 'sqlalchemy') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""
