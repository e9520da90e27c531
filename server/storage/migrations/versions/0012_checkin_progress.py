"""check-in progress and severe-score thresholds

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkin_progress",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("answers_enc", sa.Text(), nullable=False),
        sa.Column("raised_level", sa.String(length=10), server_default="none", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_checkin_progress_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_checkin_progress_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkin_progress")),
        sa.UniqueConstraint(
            "session_id", "patient_id", name=op.f("uq_checkin_progress_session_id_patient_id")
        ),
    )
    with op.batch_alter_table("programs") as batch:
        batch.add_column(sa.Column("severe_scores", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("severe_scores")
    op.drop_table("checkin_progress")
