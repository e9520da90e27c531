"""The crisis path: concerns, the emergency directory, events and their timeline, deadlines,
on-call, settings, the outbox, safety plans and break-glass."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import (
    UTCDateTime,
    _created,
    _id,
    metadata,
)

# Concerns recorded by crisis/escalation.py until the crisis path acts on them.
crisis_requests = sa.Table(
    "crisis_requests",
    metadata,
    _id(),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # event | review_task
    sa.Column("trigger", sa.String(20), nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("detail_enc", sa.Text(), nullable=False),  # rule and scores, sealed
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("closed_at", UTCDateTime(), nullable=True),
    sa.Column("closed_by", sa.String(36), nullable=True),
    sa.Index("ix_crisis_requests_session", "session_id", "created_at"),
)

# The local emergency directory (crisis/directory.py). One directory for the whole
# organisation rather than one per program: emergency numbers belong to the place a patient
# is in, every program's patients in the same county need the same dispatch line, and the
# admins who keep it already manage every program (server/accounts/scope.py).
emergency_directory = sa.Table(
    "emergency_directory",
    metadata,
    _id(),
    # "STATE|county key|ZIP or *": an import updates the row whose area it names.
    sa.Column("area_key", sa.String(100), nullable=False, unique=True),
    sa.Column("county_key", sa.String(64), nullable=False),
    sa.Column("state", sa.String(2), nullable=False),
    sa.Column("county", sa.String(64), nullable=False),
    sa.Column("zip", sa.String(5), nullable=True),  # NULL: the row covers the whole county
    # Phones are stored as their 10 digits.
    sa.Column("psap_phone", sa.String(10), nullable=False),
    sa.Column("crisis_line", sa.String(10), nullable=True),
    sa.Column("mobile_crisis", sa.String(10), nullable=True),
    sa.Column("ed_name", sa.String(120), nullable=True),
    sa.Column("ed_address", sa.String(300), nullable=True),
    sa.Column("ed_phone", sa.String(10), nullable=True),
    sa.Column("police_nonemergency", sa.String(10), nullable=True),
    sa.Column("verified_on", sa.Date(), nullable=False),
    sa.Column("owner", sa.String(120), nullable=False),
    sa.Column("example", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(36), nullable=True),  # staff id; NULL for shipped rows
    sa.Index("ix_emergency_directory_zip", "zip"),
    sa.Index("ix_emergency_directory_county_key", "county_key"),
)

# Crisis events (crisis/ledger.py): one row per incident, the header of its timeline.
# Moderate and high concerns become events; low ones stay review tasks in crisis_requests.
CRISIS_STATES = ("open", "acknowledged", "closed")
crisis_events = sa.Table(
    "crisis_events",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("trigger", sa.String(20), nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("raised_at", UTCDateTime(), nullable=False),
    sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
    sa.Column("acknowledged_by", sa.String(36), nullable=True),
    sa.Column("signed_off_at", UTCDateTime(), nullable=True),
    sa.Column("signed_off_by", sa.String(36), nullable=True),
    sa.CheckConstraint(f"state IN {CRISIS_STATES}", name="state"),
    sa.Index("ix_crisis_events_program", "program_id", "state", "raised_at"),
    # One patient, one incident, one timeline: at most one unclosed event per session.
    sa.Index(
        "uq_crisis_events_open",
        "patient_id",
        "session_id",
        unique=True,
        postgresql_where=sa.text("state <> 'closed'"),
        sqlite_where=sa.text("state <> 'closed'"),
    ),
)

# Every step of every event, append-only and hash-chained (one chain, `seq`); `step_no`
# numbers an event's own steps. The payload is sealed; the hash covers its plain value.
crisis_steps = sa.Table(
    "crisis_steps",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("event_id", sa.ForeignKey("crisis_events.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("step_no", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(36), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("payload_enc", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac_version", sa.Integer(), nullable=True),
    sa.Column("mac_key", sa.String(16), nullable=True),
    sa.Column("column_macs", sa.Text(), nullable=True),
    sa.UniqueConstraint("event_id", "step_no"),
    sa.Index("ix_crisis_steps_kind", "kind", "at"),
)

crisis_head = sa.Table(
    "crisis_head",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac_key", sa.String(16), nullable=True),
    sa.Column("mac", sa.String(64), nullable=True),
)

# Durable acknowledgement deadlines (crisis/routing.py): a restart re-arms them simply by
# reading this table, and `fired_at` is set exactly once by whichever process claims it.
crisis_timers = sa.Table(
    "crisis_timers",
    metadata,
    _id(),
    sa.Column("event_id", sa.ForeignKey("crisis_events.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("waiting_on", sa.String(120), nullable=False),  # roles, comma-separated
    sa.Column("page", sa.String(120), nullable=False),  # roles paged when it fires
    sa.Column("due_at", UTCDateTime(), nullable=False),
    sa.Column("fired_at", UTCDateTime(), nullable=True),
    sa.Column("cancelled_at", UTCDateTime(), nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.UniqueConstraint("event_id", "purpose"),
    sa.Index("ix_crisis_timers_due", "fired_at", "cancelled_at", "due_at"),
)

# Who is on call for a program, per role and time window.
ONCALL_ROLES = ("primary", "backup", "medical_director")
oncall_shifts = sa.Table(
    "oncall_shifts",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("staff_id", sa.ForeignKey("staff.id", ondelete="CASCADE"), nullable=False),
    sa.Column("starts_at", UTCDateTime(), nullable=False),
    sa.Column("ends_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(36), nullable=True),
    _created(),
    sa.CheckConstraint(f"role IN {ONCALL_ROLES}", name="role"),
    sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    sa.Index("ix_oncall_shifts_program", "program_id", "role", "starts_at"),
)

# Per-program crisis settings: the escalation policy (NULL = CLINICAL.md defaults) and the
# webhook, whose URL and secret are sealed (a URL may carry a token).
crisis_settings = sa.Table(
    "crisis_settings",
    metadata,
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("policy", sa.JSON(), nullable=True),
    sa.Column("webhook_url_enc", sa.Text(), nullable=True),
    sa.Column("webhook_secret_enc", sa.Text(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(36), nullable=True),
)

# Notifications waiting to be delivered: written in the same transaction as the step that
# caused them, so a crash or restart loses none. `body` is the JSON sent (no PHI).
OUTBOX_STATUSES = ("pending", "delivered", "failed", "no_webhook")
notification_outbox = sa.Table(
    "notification_outbox",
    metadata,
    _id(),
    # NULL for a notice about no event (a patient's daily mood reminder, care/mood.py).
    sa.Column("event_id", sa.ForeignKey("crisis_events.id", ondelete="RESTRICT"), nullable=True),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("body", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.CheckConstraint(f"status IN {OUTBOX_STATUSES}", name="status"),
    sa.Index("ix_notification_outbox_due", "status", "next_attempt_at"),
)

# Patients' Stanley-Brown safety plans (crisis/safety_plan.py), one sealed row per version.
safety_plans = sa.Table(
    "safety_plans",
    metadata,
    _id(),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("plan_enc", sa.Text(), nullable=False),
    sa.Column("recorded_by", sa.String(36), nullable=True),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("patient_id", "version"),
)

# Break-glass openings of an event's safety panel by a supervisor not on the event
# (CLINICAL.md section 8). The reason is sealed: it tends to describe the patient.
break_glass = sa.Table(
    "break_glass",
    metadata,
    _id(),
    sa.Column("staff_id", sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("event_id", sa.ForeignKey("crisis_events.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("program_id", sa.String(36), nullable=False),
    sa.Column("patient_id", sa.String(36), nullable=False),
    sa.Column("reason_enc", sa.Text(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_break_glass_staff_event", "staff_id", "event_id", "expires_at"),
    sa.Index("ix_break_glass_at", "at"),
)
