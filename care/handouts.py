"""Psychoeducation handouts: versions, what an upload must be, pages, and the shared view.

A handout belongs to one program and has numbered versions that are never changed: a
new upload of the same handout is the next version, and the old ones stay readable.
Markdown is rendered here with raw HTML off and split at its `##` headings, so a phone
shows one short page at a time. The shared view is what a host shows to everyone in a
room: which version and which page, followed by every participant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt

MAX_BYTES = 5 * 1024 * 1024
MAX_TITLE = 120
MAX_PAGES = 60
FORMATS = ("markdown", "pdf")
PDF_MAGIC = b"%PDF-"


class HandoutError(ValueError):
    """An upload, version or page that cannot be used, with a code and a plain reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def check_title(title: str) -> str:
    """A handout's title, trimmed: 1-120 characters."""
    title = " ".join(title.split())
    if not title or len(title) > MAX_TITLE:
        raise HandoutError(
            "invalid_title", f"Give the handout a title of 1-{MAX_TITLE} characters."
        )
    return title


def check_content(fmt: str, data: bytes) -> bytes:
    """The bytes of one version, if they are what `fmt` says and within the size limit."""
    if fmt not in FORMATS:
        raise HandoutError("invalid_format", "A handout is a PDF or Markdown.")
    if not data.strip():
        raise HandoutError("empty", "The handout is empty.")
    if len(data) > MAX_BYTES:
        raise HandoutError(
            "too_large",
            f"That file is too large: a handout may be at most {MAX_BYTES // 1048576} MB "
            f"(this one is {len(data) / 1048576:.1f} MB).",
        )
    if fmt == "pdf":
        # A browser is told this is a PDF: only something that starts like one is accepted,
        # whatever the file was called.
        if not data.startswith(PDF_MAGIC):
            raise HandoutError("not_pdf", "That file is not a PDF (it does not start with %PDF-).")
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HandoutError("not_text", "Markdown must be UTF-8 text.") from None
    if "\x00" in text:
        raise HandoutError("not_text", "Markdown must be UTF-8 text.")
    if len(split_pages(text)) > MAX_PAGES:
        raise HandoutError(
            "too_many_pages", f"A handout has at most {MAX_PAGES} pages (## headings)."
        )
    return data


def next_version(existing: Iterable[int]) -> int:
    """The number a new upload of a handout gets: one past the highest so far."""
    return max(existing, default=0) + 1


def resolve_version(pinned: int | None, versions: Iterable[int]) -> int:
    """The version an attachment opens: the pinned one, or the latest."""
    known = sorted(versions)
    if not known:
        raise HandoutError("no_version", "This handout has no versions yet.")
    if pinned is None:
        return known[-1]
    if pinned not in known:
        raise HandoutError("no_version", f"There is no version {pinned} of this handout.")
    return pinned


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a Markdown handout: its heading (if any) and its HTML."""

    title: str
    html: str


def _renderer() -> MarkdownIt:
    # Raw HTML is off: a handout is text and links, never markup or script of its own.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def split_pages(text: str) -> list[Page]:
    """Render Markdown and cut it into pages at its level-2 (`##`) headings.

    What comes before the first `##` (a `#` title, an introduction) is the first page.
    """
    md = _renderer()
    tokens = md.parse(text)
    chunks: list[list[Any]] = [[]]
    titles: list[str] = [""]
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2" and token.level == 0:
            if chunks[-1]:
                chunks.append([])
                titles.append("")
            titles[-1] = tokens[index + 1].content if index + 1 < len(tokens) else ""
        elif token.type == "heading_open" and token.tag == "h1" and not titles[-1]:
            titles[-1] = tokens[index + 1].content if index + 1 < len(tokens) else ""
        chunks[-1].append(token)
    pages = [
        Page(title, md.renderer.render(chunk, md.options, {}))
        for title, chunk in zip(titles, chunks, strict=True)
        if chunk
    ]
    return pages or [Page("", "")]


# The shared view ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shelved:
    """A handout a room may open: one version, when in the session it belongs, its pages."""

    handout_id: str
    version: int
    title: str
    format: str
    pages: int
    phase: str | None  # the phase's title; None: the whole session

    def to_json(self) -> dict[str, Any]:
        return {
            "handout_id": self.handout_id,
            "version": self.version,
            "title": self.title,
            "format": self.format,
            "pages": self.pages,
            "phase": self.phase,
        }


@dataclass(frozen=True, slots=True)
class SharedView:
    """What the host shows to everyone: a handout version and the page on screen."""

    handout_id: str
    version: int
    title: str
    format: str
    page: int
    pages: int
    by: str  # the member id of who is showing it

    def to_json(self) -> dict[str, Any]:
        return {
            "handout_id": self.handout_id,
            "version": self.version,
            "title": self.title,
            "format": self.format,
            "page": self.page,
            "pages": self.pages,
            "by": self.by,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SharedView:
        return cls(
            str(data["handout_id"]),
            int(data["version"]),
            str(data["title"]),
            str(data["format"]),
            int(data["page"]),
            int(data["pages"]),
            str(data["by"]),
        )


def show(shelf: Iterable[Shelved], handout_id: str, version: int, page: int, by: str) -> SharedView:
    """Start showing a handout of this room's shelf to everyone, at `page` (from 0)."""
    found = next((s for s in shelf if s.handout_id == handout_id and s.version == version), None)
    if found is None:
        raise HandoutError("unknown_handout", "that handout is not attached to this session")
    _check_page(page, found.pages)
    return SharedView(handout_id, version, found.title, found.format, page, found.pages, by)


def turn(view: SharedView | None, page: int, by: str) -> SharedView:
    """Move the shared view to another page."""
    if view is None:
        raise HandoutError("not_showing", "no handout is being shown")
    _check_page(page, view.pages)
    return SharedView(view.handout_id, view.version, view.title, view.format, page, view.pages, by)


def _check_page(page: int, pages: int) -> None:
    if not 0 <= page < pages:
        raise HandoutError("invalid_page", f"that handout has pages 1-{pages}")


def for_phase(shelf: Iterable[Shelved], phase: str | None) -> list[Shelved]:
    """The handouts to offer now: the current phase's and the whole session's."""
    return [s for s in shelf if s.phase is None or s.phase == phase]
