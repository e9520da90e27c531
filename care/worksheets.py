"""The homework library: worksheets as plain data, and the validation of a patient's answers.

A worksheet is an ordered list of fields (type, label, help text, limits). A draft may be
saved half done; handing in needs every required field. Answers are text and whole
numbers only, stored sealed by the server; nothing here knows about storage or the web.
The urge log is for substance-use programs only (as the check-in's SUD items are).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_TEXT = 2000
MAX_LINE = 200
MAX_INSTRUCTIONS = 2000
FREE_TEXT = "free_text"


class FieldKind(StrEnum):
    """How a field is answered."""

    LINE = "line"  # one short line
    TEXT = "text"  # a few sentences
    SCALE = "scale"  # a whole number between `low` and `high`
    CHOICE = "choice"  # one of `options`


@dataclass(frozen=True, slots=True)
class WorksheetField:
    """One question of a worksheet."""

    name: str
    label: str
    kind: FieldKind
    help: str = ""
    required: bool = False
    low: int = 0
    high: int = 10
    options: tuple[tuple[str, str], ...] = ()

    @property
    def max_chars(self) -> int:
        """The longest answer a text field takes."""
        return MAX_LINE if self.kind is FieldKind.LINE else MAX_TEXT


@dataclass(frozen=True, slots=True)
class Worksheet:
    """A practice worksheet of the program library."""

    key: str
    title: str
    summary: str
    fields: tuple[WorksheetField, ...]
    sud_only: bool = False

    def field(self, name: str) -> WorksheetField:
        """The field called `name` (KeyError when there is none)."""
        for item in self.fields:
            if item.name == name:
                return item
        raise KeyError(name)


class UnknownWorksheet(LookupError):
    """No worksheet of that name, or not one this program offers."""


class AnswersInvalid(ValueError):
    """Answers that cannot be kept or handed in: one plain reason per field at fault."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in errors.items()))
        self.errors = dict(errors)


def _line(name: str, label: str, help: str = "", required: bool = False) -> WorksheetField:
    return WorksheetField(name, label, FieldKind.LINE, help, required)


def _text(name: str, label: str, help: str = "", required: bool = False) -> WorksheetField:
    return WorksheetField(name, label, FieldKind.TEXT, help, required)


def _scale(
    name: str, label: str, low: int, high: int, help: str = "", required: bool = False
) -> WorksheetField:
    return WorksheetField(name, label, FieldKind.SCALE, help, required, low, high)


DAYS = (
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
)

THOUGHT_RECORD = Worksheet(
    key="thought_record",
    title="Thought record",
    summary="Catch a thought that upset you, weigh the evidence, and find a balanced view.",
    fields=(
        _text("situation", "Situation", "Where were you, what was happening, who was there?", True),
        _text("thought", "Automatic thought", "What went through your mind?", True),
        _line("emotion", "Emotion", "One or two words: sad, anxious, angry, ashamed ...", True),
        _scale("intensity_before", "How strong was the emotion (0-100)?", 0, 100, required=True),
        _text("evidence_for", "Evidence that supports the thought"),
        _text("evidence_against", "Evidence that does not support the thought"),
        _text("balanced", "A more balanced thought", "What would you tell a friend?", True),
        _scale("intensity_after", "How strong is the emotion now (0-100)?", 0, 100),
    ),
)

ACTIVATION_PLAN = Worksheet(
    key="activation_plan",
    title="Behavioural activation plan",
    summary="Plan a few small activities that bring pleasure or a sense of achievement.",
    fields=(
        _line(
            "activity_1", "Activity 1", "Small and specific: a 10-minute walk after dinner", True
        ),
        WorksheetField("day_1", "When for activity 1", FieldKind.CHOICE, options=DAYS),
        _line("activity_2", "Activity 2"),
        WorksheetField("day_2", "When for activity 2", FieldKind.CHOICE, options=DAYS),
        _line("activity_3", "Activity 3"),
        WorksheetField("day_3", "When for activity 3", FieldKind.CHOICE, options=DAYS),
        _text("how_it_went", "What you did and how it went", required=True),
        _scale("mood_before", "Mood before the activities (0-10)", 0, 10),
        _scale("mood_after", "Mood after the activities (0-10)", 0, 10),
    ),
)

DIARY_CARD = Worksheet(
    key="diary_card",
    title="DBT diary card",
    summary="Rate the week's emotions and note the skills you used.",
    fields=(
        _scale("sadness", "Sadness (0-5)", 0, 5, required=True),
        _scale("anger", "Anger (0-5)", 0, 5, required=True),
        _scale("fear", "Fear (0-5)", 0, 5, required=True),
        _scale("shame", "Shame (0-5)", 0, 5, required=True),
        _scale("joy", "Joy (0-5)", 0, 5, required=True),
        _text("skills", "Skills you used", "Mindfulness, distress tolerance, ...", True),
        _scale(
            "skills_helped",
            "How much the skills helped (0-7)",
            0,
            7,
            "0: did not think about them; 7: used them and they helped",
        ),
        _text("notes", "Anything else for your clinician"),
    ),
)

URGE_LOG = Worksheet(
    key="urge_log",
    title="Urge log",
    summary="Write down an urge to use: what set it off, how strong it was, what you did.",
    fields=(
        _line("when", "When", "Day and time", True),
        _text("trigger", "What was happening (the trigger)", required=True),
        _scale("strength", "How strong was the urge (0-10)?", 0, 10, required=True),
        WorksheetField(
            "response",
            "What you did",
            FieldKind.CHOICE,
            required=True,
            options=(
                ("rode_it_out", "Rode it out"),
                ("coping_skill", "Used a coping skill"),
                ("reached_out", "Reached out to someone"),
                ("used", "Used"),
            ),
        ),
        _text("coping", "What helped, or what you would try next time"),
        _scale("strength_after", "How strong was it afterwards (0-10)?", 0, 10),
    ),
    sud_only=True,
)

# A free-text task: the clinician writes the task, the patient writes back.
FREE_TEXT_TASK = Worksheet(
    key=FREE_TEXT,
    title="Practice task",
    summary="A task your clinician wrote for you.",
    fields=(_text("response", "Your response", "What you did, and how it went.", True),),
)

LIBRARY: tuple[Worksheet, ...] = (THOUGHT_RECORD, ACTIVATION_PLAN, DIARY_CARD, URGE_LOG)
_BY_KEY = {sheet.key: sheet for sheet in (*LIBRARY, FREE_TEXT_TASK)}


def library_for(substance_use: bool) -> tuple[Worksheet, ...]:
    """The worksheets a program offers: the urge log only in substance-use programs."""
    return tuple(sheet for sheet in LIBRARY if substance_use or not sheet.sud_only)


def worksheet(key: str) -> Worksheet:
    """A worksheet (or the free-text task) by key, whatever the program."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise UnknownWorksheet(key) from None


def offered(key: str, *, substance_use: bool) -> Worksheet:
    """The worksheet a clinician chose, if this program may assign it."""
    if key == FREE_TEXT:
        return FREE_TEXT_TASK
    for sheet in library_for(substance_use):
        if sheet.key == key:
            return sheet
    raise UnknownWorksheet(key)


def parse_instructions(key: str, raw: str) -> str:
    """The clinician's note or task text; a free-text task must say what to do."""
    text = raw.strip()
    if len(text) > MAX_INSTRUCTIONS:
        raise AnswersInvalid({"instructions": f"keep it to {MAX_INSTRUCTIONS} characters"})
    if _has_controls(text):
        raise AnswersInvalid({"instructions": "must not contain control characters"})
    if key == FREE_TEXT and not text:
        raise AnswersInvalid({"instructions": "write the task for a free-text assignment"})
    return text


def _has_controls(text: str) -> bool:
    return any(ord(ch) < 32 and ch not in "\n\r\t" for ch in text)


def _one(sheet_field: WorksheetField, raw: Any) -> tuple[str | int | None, str | None]:
    """(value, error) for one field; None when it was left empty."""
    if not isinstance(raw, str):
        return None, "must be text"
    text = raw.strip()
    if not text:
        return None, None
    if sheet_field.kind is FieldKind.SCALE:
        low, high = sheet_field.low, sheet_field.high
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            return None, f"Choose a whole number from {low} to {high}."
        return int(text), None
    if sheet_field.kind is FieldKind.CHOICE:
        if text not in {value for value, _label in sheet_field.options}:
            return None, "Choose one of the options."
        return text, None
    if len(text) > sheet_field.max_chars:
        return None, f"Keep this to {sheet_field.max_chars} characters (it has {len(text)})."
    if _has_controls(text):
        return None, "This contains characters that cannot be saved."
    return text, None


def parse_answers(
    sheet: Worksheet, data: Mapping[str, Any], *, hand_in: bool
) -> dict[str, str | int]:
    """The answers to keep (empty fields left out), or every field's problem.

    A draft keeps whatever is well formed so far; handing in also needs each required
    field. Names that are not fields of the worksheet are refused, not ignored.
    """
    errors: dict[str, str] = {}
    names = {item.name for item in sheet.fields}
    for name in sorted(set(data) - names):
        errors[name] = "is not a question of this worksheet"
    answers: dict[str, str | int] = {}
    for item in sheet.fields:
        value, error = _one(item, data.get(item.name, ""))
        if error is not None:
            errors[item.name] = error
        elif value is not None:
            answers[item.name] = value
        elif hand_in and item.required:
            errors[item.name] = "Answer this before you hand it in (or save a draft)."
    if not hand_in and not errors and not answers:
        first = sheet.fields[0].name
        errors[first] = "Write something before saving a draft."
    if errors:
        raise AnswersInvalid(errors)
    return answers


def labelled(sheet: Worksheet, answers: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, answer as shown) for each field, in order; empty ones as a dash."""
    shown = []
    for item in sheet.fields:
        value = answers.get(item.name)
        if value is None or value == "":
            text = "\u2014"
        elif item.kind is FieldKind.CHOICE:
            text = dict(item.options).get(str(value), str(value))
        else:
            text = str(value)
        shown.append((item.label, text))
    return shown
