"""Family sessions: which appointment sessions are family sessions, and support-person links."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import UTCDateTime, _created, _id, metadata

# An appointment's session (one patient and their clinician) of kind `family`: the room
# takes the patient's support person too, by their own link.
family_sessions = sa.Table(
    "family_sessions",
    metadata,
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    _created(),
)

# A support person's join link: bound to one family session, issued only under the
# patient's current release (its consent ledger seq), stored as a hash like join links.
# No PHI here: the support person's name and phone stay sealed in the patient's record.
support_links = sa.Table(
    "support_links",
    metadata,
    _id(),
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    sa.Column("release_seq", sa.BigInteger(), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("issued_by", sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_by", sa.String(36), nullable=True),
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("phone_failures", sa.Integer(), nullable=False, server_default="0"),
    # The support person's own consent (family_participant) in the patient's ledger.
    sa.Column("consent_seq", sa.BigInteger(), nullable=True),
    _created(),
    sa.Index("ix_support_links_patient", "patient_id"),
)
