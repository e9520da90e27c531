"""Homework assignments in storage: assign, save a draft, hand in, review, count.

The clinician's task text and the patient's answers are sealed, each bound to its row and
field; opening them is the caller's read, which the caller audits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from care.worksheets import Worksheet, worksheet
from server.catalog.store import new_id
from server.phi import Keyring
from server.storage.tables import groups, homework_assignments, programs, sessions


class HomeworkStateError(Exception):
    """A change the assignment's state does not allow (handed in already, not handed in)."""


def instructions_context(row_id: str) -> str:
    """The sealing context of an assignment's task text."""
    return f"homework_assignments/{row_id}/instructions"


def answers_context(row_id: str) -> str:
    """The sealing context of a patient's answers."""
    return f"homework_assignments/{row_id}/answers"


@dataclass(frozen=True, slots=True)
class Assignment:
    """One patient's assignment, as stored (nothing sealed opened)."""

    id: str
    patient_id: str
    program_id: str
    group_id: str | None
    worksheet: Worksheet
    due_session_id: str
    due_title: str
    due_at: dt.datetime
    assigned_at: dt.datetime
    saved_at: dt.datetime | None
    handed_in_at: dt.datetime | None
    reviewed_at: dt.datetime | None
    row: Any

    @property
    def state(self) -> str:
        """ "to_do", "draft", "handed_in" or "reviewed"."""
        if self.reviewed_at is not None:
            return "reviewed"
        if self.handed_in_at is not None:
            return "handed_in"
        return "draft" if self.saved_at is not None else "to_do"

    def instructions(self, keyring: Keyring) -> str:
        """The clinician's task text or note (a read of PHI: audit it)."""
        return (
            keyring.open_optional(self.row.instructions_enc, context=instructions_context(self.id))
            or ""
        )

    def answers(self, keyring: Keyring) -> dict[str, Any]:
        """The patient's answers so far (a read of PHI: audit it)."""
        raw = keyring.open_optional(self.row.answers_enc, context=answers_context(self.id))
        return dict(json.loads(raw)) if raw else {}


def _select() -> sa.Select[Any]:
    return (
        sa.select(
            homework_assignments,
            sessions.c.starts_at.label("due_at"),
            sa.func.coalesce(groups.c.name, "One-on-one session").label("due_title"),
        )
        .join(sessions, sessions.c.id == homework_assignments.c.due_session_id)
        .outerjoin(groups, groups.c.id == sessions.c.group_id)
    )


def _assignment(row: Any) -> Assignment:
    return Assignment(
        id=row.id,
        patient_id=row.patient_id,
        program_id=row.program_id,
        group_id=row.group_id,
        worksheet=worksheet(row.worksheet),
        due_session_id=row.due_session_id,
        due_title=row.due_title,
        due_at=row.due_at,
        assigned_at=row.assigned_at,
        saved_at=row.saved_at,
        handed_in_at=row.handed_in_at,
        reviewed_at=row.reviewed_at,
        row=row,
    )


async def program_is_sud(conn: AsyncConnection, program_id: str) -> bool:
    """True for a substance-use program (its library includes the urge log)."""
    kind = await conn.scalar(sa.select(programs.c.kind).where(programs.c.id == program_id))
    return kind == "substance_use"


async def assign(
    conn: AsyncConnection,
    keyring: Keyring,
    *,
    program_id: str,
    patient_ids: Iterable[str],
    group_id: str | None,
    sheet: Worksheet,
    instructions: str,
    due_session_id: str,
    by: str,
    now: dt.datetime,
) -> str:
    """One assignment per patient (a group's members share a batch id); the batch id."""
    batch = new_id()
    for patient_id in patient_ids:
        row_id = new_id()
        await conn.execute(
            homework_assignments.insert().values(
                id=row_id,
                program_id=program_id,
                patient_id=patient_id,
                group_id=group_id,
                batch_id=batch,
                worksheet=sheet.key,
                instructions_enc=(
                    keyring.seal(instructions, context=instructions_context(row_id))
                    if instructions
                    else None
                ),
                due_session_id=due_session_id,
                assigned_by=by,
                assigned_at=now,
            )
        )
    return batch


async def get(conn: AsyncConnection, assignment_id: str) -> Assignment | None:
    """One assignment, or None."""
    row = (await conn.execute(_select().where(homework_assignments.c.id == assignment_id))).first()
    return None if row is None else _assignment(row)


async def of_patient(conn: AsyncConnection, patient_id: str) -> list[Assignment]:
    """A patient's assignments, the soonest due first."""
    rows = await conn.execute(
        _select()
        .where(homework_assignments.c.patient_id == patient_id)
        .order_by(sessions.c.starts_at.desc(), homework_assignments.c.assigned_at)
    )
    found = [_assignment(row) for row in rows]
    return sorted(found, key=lambda a: (a.handed_in_at is not None, a.due_at))


async def of_group(conn: AsyncConnection, group_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """A group's recent whole-group assignments with how many members handed them in."""
    rows = (
        await conn.execute(
            _select()
            .where(homework_assignments.c.group_id == group_id)
            .order_by(homework_assignments.c.assigned_at.desc())
        )
    ).all()
    batches: dict[str, dict[str, Any]] = {}
    for row in rows:
        item = batches.setdefault(
            row.batch_id,
            {
                "title": worksheet(row.worksheet).title,
                "due_title": row.due_title,
                "due_at": row.due_at,
                "assigned": 0,
                "handed_in": 0,
            },
        )
        item["assigned"] += 1
        item["handed_in"] += row.handed_in_at is not None
    return list(batches.values())[:limit]


async def save(
    conn: AsyncConnection,
    keyring: Keyring,
    assignment: Assignment,
    answers: dict[str, Any],
    *,
    hand_in: bool,
    now: dt.datetime,
) -> None:
    """Keep a draft or hand the answers in; nothing changes once handed in."""
    values: dict[str, Any] = {
        "answers_enc": keyring.seal(
            json.dumps(answers, sort_keys=True), context=answers_context(assignment.id)
        ),
        "saved_at": now,
    }
    if hand_in:
        values["handed_in_at"] = now
    done = await conn.execute(
        homework_assignments.update()
        .where(
            homework_assignments.c.id == assignment.id,
            homework_assignments.c.handed_in_at.is_(None),
        )
        .values(**values)
    )
    if done.rowcount != 1:
        raise HomeworkStateError("this homework has already been handed in")


async def mark_reviewed(
    conn: AsyncConnection, assignment: Assignment, by: str, now: dt.datetime
) -> None:
    """Record that a clinician has read a handed-in assignment."""
    if assignment.handed_in_at is None:
        raise HomeworkStateError("this homework has not been handed in yet")
    await conn.execute(
        homework_assignments.update()
        .where(
            homework_assignments.c.id == assignment.id,
            homework_assignments.c.reviewed_at.is_(None),
        )
        .values(reviewed_by=by, reviewed_at=now)
    )


async def staff_badge(conn: AsyncConnection, session_id: str, patient_id: str) -> dict[str, int]:
    """What staff see beside a patient in this session's room: how many assignments are due
    at this session and how many of them were handed in (counts only, no content)."""
    rows = (
        await conn.execute(
            sa.select(homework_assignments.c.handed_in_at).where(
                homework_assignments.c.due_session_id == session_id,
                homework_assignments.c.patient_id == patient_id,
            )
        )
    ).all()
    return {"due": len(rows), "handed_in": sum(1 for r in rows if r.handed_in_at is not None)}
