"""crisis ledger: events, steps, timers, on-call roster, settings, notification outbox

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 17:25:45.217301
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crisis_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crisis_head")),
    )
    op.bulk_insert(
        sa.table("crisis_head", sa.column("id"), sa.column("seq"), sa.column("hash")),
        [{"id": 1, "seq": 0, "hash": "0" * 64}],
    )
    op.create_table(
        "crisis_settings",
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=True),
        sa.Column("webhook_url_enc", sa.Text(), nullable=True),
        sa.Column("webhook_secret_enc", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_crisis_settings_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_crisis_settings")),
    )
    op.create_table(
        "oncall_shifts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("staff_id", sa.String(length=36), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('primary', 'backup', 'medical_director')", name=op.f("ck_oncall_shifts_role")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_oncall_shifts_ends_after_start")),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_oncall_shifts_program_id_programs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_oncall_shifts_staff_id_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oncall_shifts")),
    )
    with op.batch_alter_table("oncall_shifts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_oncall_shifts_program", ["program_id", "role", "starts_at"], unique=False
        )

    op.create_table(
        "crisis_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=36), nullable=True),
        sa.Column("signed_off_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_off_by", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "state IN ('open', 'acknowledged', 'closed')", name=op.f("ck_crisis_events_state")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_crisis_events_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_crisis_events_program_id_programs"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_crisis_events_session_id_sessions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crisis_events")),
    )
    with op.batch_alter_table("crisis_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_crisis_events_program", ["program_id", "state", "raised_at"], unique=False
        )
        batch_op.create_index(
            "uq_crisis_events_open",
            ["patient_id", "session_id"],
            unique=True,
            postgresql_where=sa.text("state <> 'closed'"),
            sqlite_where=sa.text("state <> 'closed'"),
        )

    op.create_table(
        "crisis_steps",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("step_no", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=36), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload_enc", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["crisis_events.id"],
            name=op.f("fk_crisis_steps_event_id_crisis_events"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_crisis_steps")),
        sa.UniqueConstraint("event_id", "step_no", name=op.f("uq_crisis_steps_event_id_step_no")),
    )
    with op.batch_alter_table("crisis_steps", schema=None) as batch_op:
        batch_op.create_index("ix_crisis_steps_kind", ["kind", "at"], unique=False)

    op.create_table(
        "crisis_timers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("waiting_on", sa.String(length=120), nullable=False),
        sa.Column("page", sa.String(length=120), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["crisis_events.id"],
            name=op.f("fk_crisis_timers_event_id_crisis_events"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crisis_timers")),
        sa.UniqueConstraint("event_id", "purpose", name=op.f("uq_crisis_timers_event_id_purpose")),
    )
    with op.batch_alter_table("crisis_timers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_crisis_timers_due", ["fired_at", "cancelled_at", "due_at"], unique=False
        )

    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'no_webhook')",
            name=op.f("ck_notification_outbox_status"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["crisis_events.id"],
            name=op.f("fk_notification_outbox_event_id_crisis_events"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
    )
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_outbox_due", ["status", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("notification_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_outbox_due")

    op.drop_table("notification_outbox")
    with op.batch_alter_table("crisis_timers", schema=None) as batch_op:
        batch_op.drop_index("ix_crisis_timers_due")

    op.drop_table("crisis_timers")
    with op.batch_alter_table("crisis_steps", schema=None) as batch_op:
        batch_op.drop_index("ix_crisis_steps_kind")

    op.drop_table("crisis_steps")
    with op.batch_alter_table("crisis_events", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_crisis_events_open",
            postgresql_where=sa.text("state <> 'closed'"),
            sqlite_where=sa.text("state <> 'closed'"),
        )
        batch_op.drop_index("ix_crisis_events_program")

    op.drop_table("crisis_events")
    with op.batch_alter_table("oncall_shifts", schema=None) as batch_op:
        batch_op.drop_index("ix_oncall_shifts_program")

    op.drop_table("oncall_shifts")
    op.drop_table("crisis_settings")
    op.drop_table("crisis_head")
