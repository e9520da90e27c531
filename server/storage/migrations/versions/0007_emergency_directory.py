"""emergency directory

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 17:40:12.402117
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "emergency_directory",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("area_key", sa.String(length=100), nullable=False),
        sa.Column("county_key", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("county", sa.String(length=64), nullable=False),
        sa.Column("zip", sa.String(length=5), nullable=True),
        sa.Column("psap_phone", sa.String(length=10), nullable=False),
        sa.Column("crisis_line", sa.String(length=10), nullable=True),
        sa.Column("mobile_crisis", sa.String(length=10), nullable=True),
        sa.Column("ed_name", sa.String(length=120), nullable=True),
        sa.Column("ed_address", sa.String(length=300), nullable=True),
        sa.Column("ed_phone", sa.String(length=10), nullable=True),
        sa.Column("police_nonemergency", sa.String(length=10), nullable=True),
        sa.Column("verified_on", sa.Date(), nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("example", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergency_directory")),
        sa.UniqueConstraint("area_key", name=op.f("uq_emergency_directory_area_key")),
    )
    with op.batch_alter_table("emergency_directory", schema=None) as batch_op:
        batch_op.create_index("ix_emergency_directory_county_key", ["county_key"], unique=False)
        batch_op.create_index("ix_emergency_directory_zip", ["zip"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("emergency_directory", schema=None) as batch_op:
        batch_op.drop_index("ix_emergency_directory_zip")
        batch_op.drop_index("ix_emergency_directory_county_key")

    op.drop_table("emergency_directory")
