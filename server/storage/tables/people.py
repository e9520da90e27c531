"""Programs, staff and their sign-in records, patients, groups, sessions and join links."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.tables.base import (
    JOIN_LINK_MODES,
    PROGRAM_KINDS,
    SESSION_KINDS,
    SESSION_STATES,
    STAFF_ROLES,
    UTCDateTime,
    _created,
    _id,
    metadata,
)

programs = sa.Table(
    "programs",
    metadata,
    _id(),
    sa.Column("name", sa.String(120), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("phone", sa.String(32), nullable=False),
    sa.Column("join_link_mode", sa.String(20), nullable=False, server_default="per_session"),
    sa.Column("join_requires_dob", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Consent kinds each session type requires; NULL means the defaults (rooms/consent.py).
    sa.Column("consent_group", sa.JSON(), nullable=True),
    sa.Column("consent_individual", sa.JSON(), nullable=True),
    sa.Column("recording_enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    # {"phq9": days, "gad7": days, "cssrs": days}: how often each is asked (0 = every session).
    sa.Column("screening_cadence", sa.JSON(), nullable=True),
    # {"phq9": total, "gad7": total}: severe at or above (a review task); NULL = defaults,
    # and a value above the default is never used (crisis/questions.py SEVERE_DEFAULTS).
    sa.Column("severe_scores", sa.JSON(), nullable=True),
    _created(),
    sa.CheckConstraint(f"kind IN {PROGRAM_KINDS}", name="kind"),
    sa.CheckConstraint(f"join_link_mode IN {JOIN_LINK_MODES}", name="join_link_mode"),
)

staff = sa.Table(
    "staff",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("display_name", sa.String(120), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("licence", sa.String(120), nullable=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    # TOTP: the secret is sealed like PHI; the last accepted time step refuses replays.
    sa.Column("totp_secret_enc", sa.Text(), nullable=True),
    sa.Column("totp_enrolled_at", UTCDateTime(), nullable=True),
    sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
    # Every staff session carries the generation it began in; sign-out, a password or
    # second-factor reset and disabling add one, and older sessions stop working.
    sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"),
    _created(),
    sa.CheckConstraint(f"role IN {STAFF_ROLES}", name="role"),
)

recovery_codes = sa.Table(
    "recovery_codes",
    metadata,
    _id(),
    sa.Column("staff_id", sa.ForeignKey("staff.id", ondelete="CASCADE"), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("used_at", UTCDateTime(), nullable=True),
    _created(),
)

# One-time links for staff: an invitation to set a password and enrol a second factor.
staff_invites = sa.Table(
    "staff_invites",
    metadata,
    _id(),
    sa.Column("staff_id", sa.ForeignKey("staff.id", ondelete="CASCADE"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=True),
    _created(),
)

# Failed sign-ins, for rate limiting by account (hashed e-mail) and by address.
auth_failures = sa.Table(
    "auth_failures",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("account_hash", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_auth_failures_account", "account_hash", "at"),
    sa.Index("ix_auth_failures_address", "address", "at"),
)

# PHI columns (suffix `_enc`) hold AES-GCM ciphertext with a key id; see server/phi.py.
patients = sa.Table(
    "patients",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("legal_name_enc", sa.Text(), nullable=False),
    sa.Column("display_name_enc", sa.Text(), nullable=False),
    sa.Column("date_of_birth_enc", sa.Text(), nullable=True),
    sa.Column("home_address_enc", sa.Text(), nullable=True),
    sa.Column("backup_phone_enc", sa.Text(), nullable=True),
    sa.Column("alternate_phone_enc", sa.Text(), nullable=True),
    # JSON {"name", "relationship", "phone"}, sealed as one value.
    sa.Column("support_person_enc", sa.Text(), nullable=True),
    sa.Column("support_release", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("preferred_ed_enc", sa.Text(), nullable=True),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("adolescent", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("screening_cadence", sa.JSON(), nullable=True),  # a per-patient override
    _created(),
)

groups = sa.Table(
    "groups",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("name", sa.String(120), nullable=False),
    sa.Column("lead_clinician_id", sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("cofacilitator_id", sa.ForeignKey("staff.id"), nullable=True),
    sa.Column("time_zone", sa.String(64), nullable=False),
    # JSON list of {"weekday": 0-6 (Mon=0), "start": "HH:MM", "end": "HH:MM"}.
    sa.Column("schedule", sa.JSON(), nullable=False),
    sa.Column("template", sa.String(120), nullable=False),
    sa.Column("starts_on", sa.Date(), nullable=False),
    sa.Column("ends_on", sa.Date(), nullable=True),
    _created(),
    sa.UniqueConstraint("program_id", "name"),
)

group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="RESTRICT"), primary_key=True),
    sa.Column("joined_on", sa.Date(), nullable=False),
    sa.Column("left_on", sa.Date(), nullable=True),
)

appointments = sa.Table(
    "appointments",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("clinician_id", sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("template", sa.String(120), nullable=False),
    sa.Column("starts_at", UTCDateTime(), nullable=False),
    sa.Column("ends_at", UTCDateTime(), nullable=False),
    _created(),
    sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    _id(),
    sa.Column("program_id", sa.ForeignKey("programs.id", ondelete="RESTRICT"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=True),
    sa.Column(
        "appointment_id", sa.ForeignKey("appointments.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("template", sa.String(120), nullable=False),
    sa.Column("starts_at", UTCDateTime(), nullable=False),
    sa.Column("ends_at", UTCDateTime(), nullable=False),
    sa.Column("state", sa.String(20), nullable=False, server_default="scheduled"),
    # Who was in the live room, as what, and muted or not (ids and flags, no names), so a
    # process that takes the room over rebuilds it (rooms.model.Room.restore).
    sa.Column("room_state", sa.JSON(), nullable=True),
    _created(),
    sa.CheckConstraint(f"kind IN {SESSION_KINDS}", name="kind"),
    sa.CheckConstraint(f"state IN {SESSION_STATES}", name="state"),
    sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    sa.CheckConstraint(
        "(kind = 'group' AND group_id IS NOT NULL AND appointment_id IS NULL) OR "
        "(kind = 'individual' AND appointment_id IS NOT NULL AND group_id IS NULL)",
        name="one_owner",
    ),
    sa.UniqueConstraint("group_id", "starts_at"),
    sa.UniqueConstraint("appointment_id"),
    sa.Index("ix_sessions_starts_at", "starts_at"),
)

# Patients have no passwords: a link holds an opaque token, stored only as its SHA-256.
join_links = sa.Table(
    "join_links",
    metadata,
    _id(),
    sa.Column("patient_id", sa.ForeignKey("patients.id", ondelete="CASCADE"), nullable=False),
    # NULL for a standing link, which admits the patient to any of their sessions.
    sa.Column("session_id", sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("issued_by", sa.ForeignKey("staff.id"), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_by", sa.ForeignKey("staff.id"), nullable=True),
    # The one device allowed at a time; a second use moves it.
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("dob_failures", sa.Integer(), nullable=False, server_default="0"),
    _created(),
    sa.Index("ix_join_links_patient", "patient_id"),
)
