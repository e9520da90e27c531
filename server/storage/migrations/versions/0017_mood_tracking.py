"""daily mood checks: entries, reminder settings, reminder markers; event-less notices

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 19:00:00

A daily reminder is a notification about no crisis event, so the outbox's event_id becomes
nullable; every crisis notification still carries one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mood_entries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("entry_enc", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_mood_entries_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mood_entries")),
        sa.UniqueConstraint("patient_id", "day", name=op.f("uq_mood_entries_patient_id_day")),
    )
    op.create_table(
        "mood_settings",
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("reminder_enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reminder_time", sa.String(length=5), server_default="19:00", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_mood_settings_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_mood_settings")),
    )
    op.create_table(
        "mood_reminders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_mood_reminders_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mood_reminders")),
        sa.UniqueConstraint("patient_id", "day", name=op.f("uq_mood_reminders_patient_id_day")),
    )
    with op.batch_alter_table("notification_outbox") as batch:
        batch.alter_column("event_id", existing_type=sa.String(length=36), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM notification_outbox WHERE event_id IS NULL")
    with op.batch_alter_table("notification_outbox") as batch:
        batch.alter_column("event_id", existing_type=sa.String(length=36), nullable=False)
    op.drop_table("mood_reminders")
    op.drop_table("mood_settings")
    op.drop_table("mood_entries")
