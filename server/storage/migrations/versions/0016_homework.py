"""homework assignments between sessions

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "homework_assignments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=True),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("worksheet", sa.String(length=40), nullable=False),
        sa.Column("instructions_enc", sa.Text(), nullable=True),
        sa.Column("due_session_id", sa.String(length=36), nullable=False),
        sa.Column("assigned_by", sa.String(length=36), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answers_enc", sa.Text(), nullable=True),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handed_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by", sa.String(length=36), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_homework_assignments_program_id_programs"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_homework_assignments_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_homework_assignments_group_id_groups"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["due_session_id"],
            ["sessions.id"],
            name=op.f("fk_homework_assignments_due_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["assigned_by"], ["staff.id"], name=op.f("fk_homework_assignments_assigned_by_staff")
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by"], ["staff.id"], name=op.f("fk_homework_assignments_reviewed_by_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_homework_assignments")),
    )
    with op.batch_alter_table("homework_assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_homework_assignments_patient", ["patient_id", "assigned_at"], unique=False
        )
        batch_op.create_index(
            "ix_homework_assignments_due", ["due_session_id", "patient_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("homework_assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_homework_assignments_due")
        batch_op.drop_index("ix_homework_assignments_patient")
    op.drop_table("homework_assignments")
