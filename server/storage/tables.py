"""The schema, in SQLAlchemy Core: one metadata for SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timestamps stored in UTC and always read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        # SQLite has no time zone type: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _id(name: str = "id") -> sa.Column[str]:
    return sa.Column(name, sa.String(36), primary_key=True)


def _created() -> sa.Column[dt.datetime]:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


STAFF_ROLES = ("admin", "supervisor", "clinician")
PROGRAM_KINDS = ("mental_health", "substance_use")
SESSION_KINDS = ("group", "individual")
SESSION_STATES = ("scheduled", "open", "live", "ended", "cancelled")
JOIN_LINK_MODES = ("per_session", "standing")

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
    sa.Column("event_id", sa.ForeignKey("crisis_events.id", ondelete="RESTRICT"), nullable=False),
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
