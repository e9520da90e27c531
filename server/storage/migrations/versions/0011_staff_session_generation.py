"""staff session generation, so sign-out and resets revoke existing sessions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff") as batch:
        batch.add_column(
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("staff") as batch:
        batch.drop_column("session_generation")
