"""The audit trail, attendance, consent, session structure and the pre-session check-in."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import (
    UTCDateTime,
    _id,
    metadata,
)

# Append-only and hash-chained: each row's hash covers its fields and the previous hash.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor_type", sa.String(16), nullable=False),
    sa.Column("actor_id", sa.String(36), nullable=True),
    sa.Column("actor_role", sa.String(20), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target_type", sa.String(32), nullable=True),
    sa.Column("target_id", sa.String(36), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(32), nullable=True),
    sa.Column("detail", sa.JSON(), nullable=True),
    # The previous row's MAC and this row's (server/rowmac.py), keyed from the key file.
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac_version", sa.Integer(), nullable=True),
    sa.Column("mac_key", sa.String(16), nullable=True),
    sa.Column("column_macs", sa.Text(), nullable=True),
    sa.Index("ix_audit_log_target", "target_type", "target_id"),
)

# The chain's head, one row: taking its lock serialises appends across processes.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac_key", sa.String(16), nullable=True),
    sa.Column("mac", sa.String(64), nullable=True),
)

# Every arrival, admission, drop, return and departure in a room, as it happened.
attendance_events = sa.Table(
    "attendance_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("person_type", sa.String(16), nullable=False),
    sa.Column("person_id", sa.String(36), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_attendance_session", "session_id", "at"),
)

# Versioned consent documents. Old versions stay forever; records point at them.
consent_templates = sa.Table(
    "consent_templates",
    metadata,
    _id(),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("source", sa.Text(), nullable=False),
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("effective_on", sa.Date(), nullable=False),
    sa.Column("requires_reconsent", sa.Boolean(), nullable=False),
    sa.Column("published_by", sa.ForeignKey("staff.id"), nullable=True),
    sa.Column("published_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("kind", "language", "version"),
)

# The exact text a patient was shown (template filled with program and clinician), by hash.
consent_texts = sa.Table(
    "consent_texts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("text", sa.Text(), nullable=False),
)

# The consent ledger: append-only, hash-chained, each row signed with Ed25519.
consent_events = sa.Table(
    "consent_events",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    # consented | refused | revoked | copy_provided
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("template_id", sa.String(36), nullable=True),
    sa.Column("template_version", sa.Integer(), nullable=True),
    sa.Column("text_sha256", sa.String(64), nullable=True),
    sa.Column("language", sa.String(8), nullable=True),
    sa.Column("session_id", sa.String(36), nullable=True),
    sa.Column("presented_at", UTCDateTime(), nullable=True),
    sa.Column("consented_at", UTCDateTime(), nullable=True),
    sa.Column("method", sa.String(20), nullable=True),
    sa.Column("obtained_by", sa.String(36), nullable=True),
    sa.Column("witness_id", sa.String(36), nullable=True),
    sa.Column("signer_role", sa.String(20), nullable=True),
    # The typed name and the capture context (user agent, address) are sealed like PHI;
    # the hash covers their plain values, so re-encryption never breaks the chain.
    sa.Column("signature_enc", sa.Text(), nullable=True),
    sa.Column("context_enc", sa.Text(), nullable=True),
    sa.Column("supersedes", sa.BigInteger(), nullable=True),
    sa.Column("revokes", sa.BigInteger(), nullable=True),
    sa.Column("reason_enc", sa.Text(), nullable=True),
    sa.Column("recorded_by", sa.String(36), nullable=True),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
    # The public hash and signature above let a third party check an export offline; the
    # keyed MAC below covers every column, them included (server/rowmac.py).
    sa.Column("mac_version", sa.Integer(), nullable=True),
    sa.Column("mac_key", sa.String(16), nullable=True),
    sa.Column("column_macs", sa.Text(), nullable=True),
    sa.Column("mac", sa.String(64), nullable=True),
    sa.Index("ix_consent_events_patient", "patient_id", "seq"),
)

consent_head = sa.Table(
    "consent_head",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("mac_key", sa.String(16), nullable=True),
    sa.Column("mac", sa.String(64), nullable=True),
)

# Session templates: ordered phases with planned minutes (rooms/structure.py).
session_templates = sa.Table(
    "session_templates",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("title", sa.String(120), nullable=False),
    sa.Column("phases", sa.JSON(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(36), nullable=True),
)

# Each live session's clock: absolute times, so any restart or node computes the same.
session_clocks = sa.Table(
    "session_clocks",
    metadata,
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("state", sa.JSON(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# A clinician's attestation of a session's attendance figures.
attendance_attestations = sa.Table(
    "attendance_attestations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("staff_id", sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("figures_sha256", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)

# The every-session safety check: where the patient is now and how to reach them.
safety_checks = sa.Table(
    "safety_checks",
    metadata,
    _id(),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    # JSON {address, zip, county, callback_phone, support_reachable, private_space,
    # same_as_last_time}, sealed; the ZIP and county are kept for the local directory.
    sa.Column("answers_enc", sa.Text(), nullable=False),
    sa.Column("zip", sa.String(10), nullable=True),
    sa.Column("county", sa.String(64), nullable=True),
    sa.Column("private_space", sa.Boolean(), nullable=False),
    sa.Column("recorded_by", sa.String(36), nullable=True),  # staff id when taken by phone
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_safety_checks_patient", "patient_id", "at"),
)

# Screening results: answers, scores and the level, sealed as one value.
screenings = sa.Table(
    "screenings",
    metadata,
    _id(),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("result_enc", sa.Text(), nullable=False),
    sa.Column("instruments", sa.String(64), nullable=False),  # e.g. "phq9,gad7,cssrs"
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_screenings_patient", "patient_id", "at"),
)

# A check-in in progress: each answer is stored (sealed) as it is given, so a reload
# resumes and a closed tab loses nothing; `raised_level` is what has already been handed to
# crisis/escalation.py, so finishing does not raise the same concern twice. The row goes
# when the screening is stored.
checkin_progress = sa.Table(
    "checkin_progress",
    metadata,
    _id(),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("plan", sa.JSON(), nullable=False),  # which instruments are asked
    sa.Column("answers_enc", sa.Text(), nullable=False),
    sa.Column("raised_level", sa.String(10), nullable=False, server_default="none"),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("session_id", "patient_id"),
)
