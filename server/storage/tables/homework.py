"""Homework between sessions: what a clinician assigned, and what the patient wrote back."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import UTCDateTime, _id, metadata

# One row per patient and assignment: a whole-group assignment is one row per member,
# sharing a `batch_id`. The clinician's task text and the patient's answers are PHI, sealed
# (server/homework/store.py); the worksheet key is the library's name, not PHI.
homework_assignments = sa.Table(
    "homework_assignments",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="SET NULL"), nullable=True),
    sa.Column("batch_id", sa.String(36), nullable=False),
    sa.Column("worksheet", sa.String(40), nullable=False),
    sa.Column("instructions_enc", sa.Text(), nullable=True),
    sa.Column("due_session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("assigned_by", sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("assigned_at", UTCDateTime(), nullable=False),
    sa.Column("answers_enc", sa.Text(), nullable=True),
    sa.Column("saved_at", UTCDateTime(), nullable=True),
    sa.Column("handed_in_at", UTCDateTime(), nullable=True),
    sa.Column("reviewed_by", sa.ForeignKey("staff.id"), nullable=True),
    sa.Column("reviewed_at", UTCDateTime(), nullable=True),
    sa.Index("ix_homework_assignments_patient", "patient_id", "assigned_at"),
    sa.Index("ix_homework_assignments_due", "due_session_id", "patient_id"),
)
