"""Daily mood checks (care/mood.py): the entries, each program's reminder setting, and the
once-a-day marker of reminders already queued."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import UTCDateTime, _id, metadata

# One row per patient per calendar day in the program's time zone; a second check the same
# day replaces the values. Everything the patient entered is sealed as one JSON value.
mood_entries = sa.Table(
    "mood_entries",
    metadata,
    _id(),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("day", sa.Date(), nullable=False),
    sa.Column("entry_enc", sa.Text(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("patient_id", "day"),
)

# Per program: whether patients get a daily reminder, and at what local time.
mood_settings = sa.Table(
    "mood_settings",
    metadata,
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("reminder_enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("reminder_time", sa.String(5), nullable=False, server_default="19:00"),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(36), nullable=True),
)

# The once-a-day marker: a reminder queued for a patient and day is never queued again,
# whichever process or restart looks next (the unique pair is the guard).
mood_reminders = sa.Table(
    "mood_reminders",
    metadata,
    _id(),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("day", sa.Date(), nullable=False),
    sa.Column("notification_id", sa.String(36), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("patient_id", "day"),
)
