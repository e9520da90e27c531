"""psychoeducation handouts: versions and attachments

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handouts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_handouts_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handouts")),
    )
    op.create_index("ix_handouts_program", "handouts", ["program_id"])
    op.create_table(
        "handout_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("handout_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "format IN ('markdown', 'pdf')", name=op.f("ck_handout_versions_format")
        ),
        sa.ForeignKeyConstraint(
            ["handout_id"],
            ["handouts.id"],
            name=op.f("fk_handout_versions_handout_id_handouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handout_versions")),
        sa.UniqueConstraint(
            "handout_id", "version", name=op.f("uq_handout_versions_handout_id_version")
        ),
    )
    op.create_table(
        "handout_attachments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("handout_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("template", sa.String(length=63), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("phase", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "(template IS NOT NULL AND session_id IS NULL AND phase IS NOT NULL) OR "
            "(template IS NULL AND session_id IS NOT NULL)",
            name=op.f("ck_handout_attachments_one_target"),
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_handout_attachments_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["handout_id"],
            ["handouts.id"],
            name=op.f("fk_handout_attachments_handout_id_handouts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_handout_attachments_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handout_attachments")),
    )
    op.create_index(
        "ix_handout_attachments_program_template",
        "handout_attachments",
        ["program_id", "template"],
    )
    op.create_index("ix_handout_attachments_session", "handout_attachments", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_handout_attachments_session", table_name="handout_attachments")
    op.drop_index("ix_handout_attachments_program_template", table_name="handout_attachments")
    op.drop_table("handout_attachments")
    op.drop_table("handout_versions")
    op.drop_index("ix_handouts_program", table_name="handouts")
    op.drop_table("handouts")
