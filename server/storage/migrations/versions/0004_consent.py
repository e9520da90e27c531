"""consent

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:34:26.415572
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_head")),
    )
    op.create_table(
        "consent_texts",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_consent_texts")),
    )
    op.bulk_insert(
        sa.table("consent_head", sa.column("id"), sa.column("seq"), sa.column("hash")),
        [{"id": 1, "seq": 0, "hash": "0" * 64}],
    )
    op.create_table(
        "consent_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("template_id", sa.String(length=36), nullable=True),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("presented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("method", sa.String(length=20), nullable=True),
        sa.Column("obtained_by", sa.String(length=36), nullable=True),
        sa.Column("witness_id", sa.String(length=36), nullable=True),
        sa.Column("signer_role", sa.String(length=20), nullable=True),
        sa.Column("signature_enc", sa.Text(), nullable=True),
        sa.Column("context_enc", sa.Text(), nullable=True),
        sa.Column("supersedes", sa.BigInteger(), nullable=True),
        sa.Column("revokes", sa.BigInteger(), nullable=True),
        sa.Column("reason_enc", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(length=36), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_consent_events_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_consent_events")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index("ix_consent_events_patient", ["patient_id", "seq"], unique=False)

    op.create_table(
        "consent_templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("effective_on", sa.Date(), nullable=False),
        sa.Column("requires_reconsent", sa.Boolean(), nullable=False),
        sa.Column("published_by", sa.String(length=36), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["published_by"], ["staff.id"], name=op.f("fk_consent_templates_published_by_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_templates")),
        sa.UniqueConstraint(
            "kind", "language", "version", name=op.f("uq_consent_templates_kind_language_version")
        ),
    )
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consent_group", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("consent_individual", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("recording_enabled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.drop_column("recording_enabled")
        batch_op.drop_column("consent_individual")
        batch_op.drop_column("consent_group")

    op.drop_table("consent_templates")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_events_patient")

    op.drop_table("consent_events")
    op.drop_table("consent_texts")
    op.drop_table("consent_head")
