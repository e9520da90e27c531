"""Who may do what: the one table of role x action that every route is checked against."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Staff roles. Patients have no role here: they enter through join links."""

    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    CLINICIAN = "clinician"


class Action(StrEnum):
    """Things a signed-in staff member may be allowed to do."""

    PROGRAMS_READ = "programs.read"
    PROGRAMS_MANAGE = "programs.manage"
    STAFF_READ = "staff.read"
    STAFF_MANAGE = "staff.manage"
    PATIENTS_READ = "patients.read"
    PATIENTS_MANAGE = "patients.manage"
    GROUPS_READ = "groups.read"
    GROUPS_MANAGE = "groups.manage"
    APPOINTMENTS_READ = "appointments.read"
    APPOINTMENTS_MANAGE = "appointments.manage"
    SESSIONS_READ = "sessions.read"
    # Per-patient attendance (a session's figures, its CSV, the weekly roll-up) is part of
    # the patient's record: the people who care for the patient, not supervisors.
    ATTENDANCE_READ = "attendance.read"
    DASHBOARD_VIEW = "dashboard.view"
    # The supervisor dashboard: every live session of a program and its open crises.
    SUPERVISION_VIEW = "supervision.view"
    JOIN_LINKS_MANAGE = "join_links.manage"
    DIRECTORY_READ = "directory.read"
    DIRECTORY_MANAGE = "directory.manage"
    # Crisis events: who is on an event is checked per event (server/crisis/api.py).
    CRISIS_RAISE = "crisis.raise"
    CRISIS_READ = "crisis.read"
    CRISIS_ACT = "crisis.act"
    CRISIS_SIGN_OFF = "crisis.sign_off"
    CRISIS_REPORT = "crisis.report"
    CRISIS_CONFIGURE = "crisis.configure"
    # Opening an event's safety panel without being on the event, with a reason (audited).
    CRISIS_BREAK_GLASS = "crisis.break_glass"
    ONCALL_READ = "oncall.read"
    ONCALL_MANAGE = "oncall.manage"
    # The program's handout library: upload, version, attach (program material, not PHI).
    HANDOUTS_MANAGE = "handouts.manage"


# Clinicians' reads are further narrowed to their own groups and patients
# (server/accounts/scope.py).
PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.SUPERVISOR: frozenset(
        {
            Action.PROGRAMS_READ,
            Action.STAFF_READ,
            Action.GROUPS_READ,
            Action.APPOINTMENTS_READ,
            Action.SESSIONS_READ,
            Action.DASHBOARD_VIEW,
            Action.SUPERVISION_VIEW,
            Action.DIRECTORY_READ,
            Action.CRISIS_RAISE,
            Action.CRISIS_READ,
            Action.CRISIS_ACT,
            Action.CRISIS_SIGN_OFF,
            Action.CRISIS_REPORT,
            Action.CRISIS_BREAK_GLASS,
            Action.ONCALL_READ,
        }
    ),
    Role.CLINICIAN: frozenset(
        {
            Action.PROGRAMS_READ,
            Action.PATIENTS_READ,
            Action.GROUPS_READ,
            Action.APPOINTMENTS_READ,
            Action.SESSIONS_READ,
            Action.ATTENDANCE_READ,
            Action.DASHBOARD_VIEW,
            Action.JOIN_LINKS_MANAGE,
            Action.DIRECTORY_READ,
            Action.CRISIS_RAISE,
            Action.CRISIS_READ,
            Action.CRISIS_ACT,
            Action.ONCALL_READ,
            Action.HANDOUTS_MANAGE,
        }
    ),
}


def allowed(role: Role, action: Action) -> bool:
    """True when `role` may perform `action`."""
    return action in PERMISSIONS[role]
