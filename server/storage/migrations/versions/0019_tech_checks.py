"""patients' technology checks

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tech_checks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("rtt_ms", sa.Integer(), nullable=True),
        sa.Column("loss_pct", sa.Float(), nullable=True),
        sa.Column("kbps", sa.Integer(), nullable=True),
        sa.Column("browser", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_tech_checks_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tech_checks")),
    )
    op.create_index(
        "ix_tech_checks_patient_id_checked_at", "tech_checks", ["patient_id", "checked_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_tech_checks_patient_id_checked_at", table_name="tech_checks")
    op.drop_table("tech_checks")
