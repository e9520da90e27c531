"""The handout rules (care/handouts.py) and the shared view in a room driven directly."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.handouts import (
    MAX_BYTES,
    HandoutError,
    SharedView,
    Shelved,
    check_content,
    check_title,
    for_phase,
    next_version,
    resolve_version,
    show,
    split_pages,
    turn,
)
from rooms import protocol as p
from rooms.events import QuietEvents
from rooms.hub import RoomHub
from rooms.model import PERMISSIONS, Identity, Room, RoomAction, RoomRole

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)
SHELF = [
    Shelved("h-breathing-0001", 2, "Box breathing", "markdown", 3, "Skills (CBT/DBT)"),
    Shelved("h-stop-skill-001", 1, "STOP skill", "markdown", 2, None),
    Shelved("h-sleep-pdf-0001", 1, "Sleep", "pdf", 1, "Break"),
]


def test_the_care_domain_imports_no_web_storage_or_media_library() -> None:
    probe = (
        "import sys, care, care.handouts\n"
        "print(','.join(m for m in ('aiohttp', 'aiortc', 'sqlalchemy', 'asyncpg', 'redis')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""


def test_versions_count_up_and_an_attachment_opens_its_pinned_version_or_the_latest() -> None:
    assert next_version([]) == 1
    assert next_version([1, 3, 2]) == 4
    assert resolve_version(None, [1, 2, 3]) == 3
    assert resolve_version(2, [1, 2, 3]) == 2
    with pytest.raises(HandoutError) as missing:
        resolve_version(5, [1, 2])
    assert missing.value.code == "no_version"
    with pytest.raises(HandoutError):
        resolve_version(None, [])


def test_markdown_is_split_at_level_two_headings_with_raw_html_shown_as_text() -> None:
    pages = split_pages(
        "# STOP\nIntro <img src=x onerror=alert(1)>\n\n## Stop\nFreeze.\n\n"
        "### Detail\nstays on its page\n\n## Observe\n[x](javascript:alert(1))\n"
    )
    assert [page.title for page in pages] == ["STOP", "Stop", "Observe"]
    assert "&lt;img" in pages[0].html and "<img" not in pages[0].html
    assert "<h3>Detail</h3>" in pages[1].html
    assert 'href="javascript' not in pages[2].html
    # A handout with no heading at all is one page; an empty one is one empty page.
    assert len(split_pages("just text")) == 1
    assert split_pages("")[0].html == ""


@given(st.text(max_size=400))
def test_any_markdown_renders_to_pages_without_raw_html(text: str) -> None:
    pages = split_pages(text)
    assert pages
    for page in pages:
        assert "<script" not in page.html.lower()


def test_uploads_are_checked_by_format_magic_bytes_size_and_encoding() -> None:
    assert check_content("pdf", b"%PDF-1.7\n...") == b"%PDF-1.7\n..."
    refusals = {
        "not_pdf": ("pdf", b"<html>not a pdf</html>"),
        "too_large": ("pdf", b"%PDF-" + b"0" * MAX_BYTES),
        "not_text": ("markdown", b"\xff\xfe\x00binary"),
        "empty": ("markdown", b"   \n"),
        "invalid_format": ("docx", b"PK\x03\x04"),
    }
    for code, (fmt, data) in refusals.items():
        with pytest.raises(HandoutError) as refused:
            check_content(fmt, data)
        assert refused.value.code == code
    with pytest.raises(HandoutError) as large:
        check_content("markdown", b"x" * (MAX_BYTES + 1))
    assert "at most 5 MB" in large.value.reason
    assert check_title("  Box   breathing ") == "Box breathing"
    for bad in ("", "   ", "x" * 121):
        with pytest.raises(HandoutError):
            check_title(bad)


def test_the_shared_view_shows_a_shelved_handout_and_turns_within_its_pages() -> None:
    view = show(SHELF, "h-breathing-0001", 2, 0, "staff:h")
    assert (view.title, view.page, view.pages) == ("Box breathing", 0, 3)
    assert turn(view, 2, "staff:c").page == 2
    assert SharedView.from_json(view.to_json()) == view
    for bad in (
        lambda: show(SHELF, "h-breathing-0001", 1, 0, "staff:h"),
        lambda: show(SHELF, "h-breathing-0001", 2, 3, "staff:h"),
        lambda: turn(view, -1, "staff:h"),
        lambda: turn(None, 0, "staff:h"),
    ):
        with pytest.raises(HandoutError):
            bad()
    assert [s.title for s in for_phase(SHELF, "Skills (CBT/DBT)")] == [
        "Box breathing",
        "STOP skill",
    ]
    assert [s.title for s in for_phase(SHELF, None)] == ["STOP skill"]


class Socket:
    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> bool:
        self.sent.append(message)
        return True

    async def close(self, code: int, reason: str) -> None:
        pass


class Saved(QuietEvents):
    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    def room_saved(self, persisted: dict[str, Any]) -> None:
        self.saved.append(persisted)


async def test_only_the_host_and_cohost_show_handouts_and_the_view_is_room_state() -> None:
    for role in RoomRole:
        allowed = role in (RoomRole.HOST, RoomRole.COHOST)
        assert (RoomAction.SHOW_HANDOUT in PERMISSIONS[role]) is allowed
    events = Saved()
    hub = RoomHub(
        Room("r1", "Evening", "group", T0), clock=lambda: T0, events=events, handouts=SHELF
    )
    host, patient = Socket("staff:h"), Socket("patient:p")
    hub.connect(host, Identity("staff", "h"), RoomRole.HOST, "Host", None)
    hub.connect(patient, Identity("patient", "p"), RoomRole.PARTICIPANT, "Pat", None)
    assert "handouts" not in patient.sent[-1]  # the waiting room offers nothing yet
    hub.room.admit_all(hub.room.members["staff:h"], T0)
    shown = p.Handout(type="handout", op="show", handout_id="h-stop-skill-001", version=1)
    with pytest.raises(p.ProtocolError) as refused:
        hub.handle(patient, shown)
    assert refused.value.reason == "only the host and co-host show a handout to everyone"
    hub.handle(host, shown)
    hub.handle(host, p.Handout(type="handout", op="page", page=1))
    assert patient.sent[-1]["type"] == "handout_view" and patient.sent[-1]["view"]["page"] == 1
    assert events.saved[-1]["handout"]["page"] == 1
    # A room rebuilt elsewhere from what was saved shows the same page to whoever arrives.
    again = RoomHub(
        Room("r1", "Evening", "group", T0), clock=lambda: T0, events=QuietEvents(), handouts=SHELF
    )
    again.restore(events.saved[-1])
    back = Socket("patient:p")
    again.connect(back, Identity("patient", "p"), RoomRole.PARTICIPANT, "Pat", None)
    snapshot = next(m for m in back.sent if m["type"] == "snapshot")
    assert snapshot["you"]["presence"] == "admitted" and snapshot["handout"]["page"] == 1
    assert [h["title"] for h in snapshot["handouts"]] == [s.title for s in SHELF]
    hub.handle(host, p.Handout(type="handout", op="stop"))
    assert patient.sent[-1]["view"] is None and events.saved[-1]["handout"] is None
    with pytest.raises(p.ProtocolError) as nothing:
        hub.handle(host, p.Handout(type="handout", op="stop"))
    assert nothing.value.code == "not_showing"
    again.close()
    for frame in (
        '{"type": "handout", "op": "flip"}',
        '{"type": "handout", "op": "page", "page": -1}',
        '{"type": "handout", "op": "show", "handout_id": "<script>", "version": 1}',
    ):
        with pytest.raises(p.ProtocolError) as invalid:
            p.parse(frame)
        assert invalid.value.code == "invalid"
