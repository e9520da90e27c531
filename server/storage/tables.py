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

programs = sa.Table(
    "programs",
    metadata,
    _id(),
    sa.Column("name", sa.String(120), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("phone", sa.String(32), nullable=False),
    _created(),
    sa.CheckConstraint(f"kind IN {PROGRAM_KINDS}", name="kind"),
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
    _created(),
    sa.CheckConstraint(f"role IN {STAFF_ROLES}", name="role"),
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
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("adolescent", sa.Boolean(), nullable=False, server_default=sa.false()),
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
