"""attendance events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:19:23.140826
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attendance_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("person_type", sa.String(length=16), nullable=False),
        sa.Column("person_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_attendance_events_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attendance_events")),
    )
    with op.batch_alter_table("attendance_events", schema=None) as batch_op:
        batch_op.create_index("ix_attendance_session", ["session_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("attendance_events", schema=None) as batch_op:
        batch_op.drop_index("ix_attendance_session")

    op.drop_table("attendance_events")
