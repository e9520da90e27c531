"""What every table shares: the one metadata, its naming convention, column helpers."""

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
