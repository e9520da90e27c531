"""The schema, in SQLAlchemy Core: one metadata for SQLite and PostgreSQL alike.

The tables live in modules by what they record; every name is importable from
here, the one place the rest of the server and the migrations read the schema from.
"""

from __future__ import annotations

from server.storage.tables.aftercare import aftercare_plans
from server.storage.tables.base import (
    JOIN_LINK_MODES,
    NAMING,
    PROGRAM_KINDS,
    SESSION_KINDS,
    SESSION_STATES,
    STAFF_ROLES,
    UTCDateTime,
    metadata,
)
from server.storage.tables.crisis import (
    CRISIS_STATES,
    ONCALL_ROLES,
    OUTBOX_STATUSES,
    break_glass,
    crisis_events,
    crisis_head,
    crisis_requests,
    crisis_settings,
    crisis_steps,
    crisis_timers,
    emergency_directory,
    notification_outbox,
    oncall_shifts,
    safety_plans,
)
from server.storage.tables.family import family_sessions, support_links
from server.storage.tables.handouts import (
    HANDOUT_FORMATS,
    handout_attachments,
    handout_versions,
    handouts,
)
from server.storage.tables.homework import homework_assignments
from server.storage.tables.mood import mood_entries, mood_reminders, mood_settings
from server.storage.tables.people import (
    appointments,
    auth_failures,
    group_members,
    groups,
    join_links,
    patients,
    programs,
    recovery_codes,
    sessions,
    staff,
    staff_invites,
)
from server.storage.tables.records import (
    attendance_attestations,
    attendance_events,
    audit_head,
    audit_log,
    checkin_progress,
    consent_events,
    consent_head,
    consent_templates,
    consent_texts,
    safety_checks,
    screenings,
    session_clocks,
    session_templates,
)
from server.storage.tables.techcheck import tech_checks

__all__ = [
    "CRISIS_STATES",
    "HANDOUT_FORMATS",
    "JOIN_LINK_MODES",
    "NAMING",
    "ONCALL_ROLES",
    "OUTBOX_STATUSES",
    "PROGRAM_KINDS",
    "SESSION_KINDS",
    "SESSION_STATES",
    "STAFF_ROLES",
    "UTCDateTime",
    "aftercare_plans",
    "appointments",
    "attendance_attestations",
    "attendance_events",
    "audit_head",
    "audit_log",
    "auth_failures",
    "break_glass",
    "checkin_progress",
    "consent_events",
    "consent_head",
    "consent_templates",
    "consent_texts",
    "crisis_events",
    "crisis_head",
    "crisis_requests",
    "crisis_settings",
    "crisis_steps",
    "crisis_timers",
    "emergency_directory",
    "family_sessions",
    "group_members",
    "groups",
    "homework_assignments",
    "handout_attachments",
    "handout_versions",
    "handouts",
    "join_links",
    "metadata",
    "mood_entries",
    "mood_reminders",
    "mood_settings",
    "notification_outbox",
    "oncall_shifts",
    "patients",
    "programs",
    "recovery_codes",
    "safety_checks",
    "safety_plans",
    "screenings",
    "session_clocks",
    "session_templates",
    "sessions",
    "staff",
    "staff_invites",
    "tech_checks",
    "support_links",
]
