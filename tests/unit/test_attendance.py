import datetime as dt

from rooms.attendance import (
    Event,
    PhaseSpan,
    by_day,
    phase_spans,
    session_attendance,
    weekly,
)

D = dt.date(2026, 11, 23)


def t(hhmm: str) -> dt.datetime:
    hours, minutes = hhmm.split(":")[:2]
    seconds = int(hhmm.split(":")[2]) if hhmm.count(":") == 2 else 0
    return dt.datetime(2026, 11, 24, int(hours) - 16, int(minutes), seconds, tzinfo=dt.UTC)


PHASES = [
    PhaseSpan(0, "arrival", "Arrival", t("18:00"), t("18:10")),
    PhaseSpan(1, "process", "Process", t("18:10"), t("19:30")),
    PhaseSpan(2, "break", "Break", t("19:30"), t("19:40")),
    PhaseSpan(3, "integration", "Integration", t("19:40"), t("21:00")),
]


def test_a_patient_who_reconnects_twice_and_sits_through_a_break() -> None:
    events = [
        Event("p", "waiting", t("18:05")),
        Event("p", "admitted", t("18:10")),
        Event("p", "disconnected", t("18:30")),
        Event("p", "joined", t("18:30:20")),
        Event("p", "disconnected", t("19:00")),
        Event("p", "joined", t("19:01")),
        Event("p", "left", t("21:00")),
    ]
    (presence,) = session_attendance(events, PHASES, t("21:30")).values()
    assert presence.reconnects == 2
    assert presence.first_join == t("18:10") and presence.last_leave == t("21:00")
    assert presence.per_phase_s[0] == 0
    assert presence.per_phase_s[1] == (80 * 60) - 20 - 60  # two gaps while disconnected
    assert presence.excluded_break_s == 600
    assert presence.per_phase_s[3] == 80 * 60
    assert presence.total_s == (80 * 60 - 80) + 80 * 60
    assert presence.minutes == round((160 * 60 - 80) / 60, 1)


def test_time_admitted_before_start_counts_and_only_breaks_are_taken_out() -> None:
    events = [
        Event("p", "waiting", t("17:50")),  # the waiting room is not the session
        Event("p", "admitted", t("17:55")),
        Event("p", "left", t("21:10")),
    ]
    (presence,) = session_attendance(events, PHASES, t("21:30")).values()
    assert presence.before_start_s == 5 * 60
    assert presence.excluded_break_s == 10 * 60
    assert presence.total_s == (5 + 170 + 10) * 60  # before start + phases + after the last
    assert sum(presence.per_phase_s.values()) == 180 * 60


def test_someone_still_present_counts_until_now_and_without_a_clock_everything_counts() -> None:
    events = [Event("s", "joined", t("18:00"))]
    (presence,) = session_attendance(events, [], t("18:45")).values()
    assert presence.total_s == 45 * 60
    removed = [Event("p", "admitted", t("18:00")), Event("p", "removed", t("18:20"))]
    assert session_attendance(removed, [], t("19:00"))["p"].total_s == 20 * 60


def test_phase_spans_come_from_the_clock_history_and_the_current_phase() -> None:
    clock = {
        "phases": [{"kind": "arrival", "title": "A"}, {"kind": "break", "title": "B"}],
        "index": 1,
        "status": "running",
        "phase_started_at": t("18:10").isoformat(),
        "history": [
            {
                "index": 0,
                "kind": "arrival",
                "started_at": t("18:00").isoformat(),
                "ended_at": t("18:10").isoformat(),
            },
        ],
    }
    spans = phase_spans(clock, t("18:15"))
    assert [(s.kind, s.start, s.end) for s in spans] == [
        ("arrival", t("18:00"), t("18:10")),
        ("break", t("18:10"), t("18:15")),
    ]
    assert phase_spans(None, t("18:00")) == []


def test_weekly_threshold_for_adults_adolescents_and_substance_use() -> None:
    days = {
        "adult": {D: 180.0, D + dt.timedelta(1): 180.0, D + dt.timedelta(2): 170.0},
        "teen": {D: 180.0, D + dt.timedelta(1): 180.0},
    }
    result = {w.patient_id: w for w in weekly(days, adolescent={"teen": True}, substance_use=False)}
    assert result["adult"].below and result["adult"].hours == 8.83
    assert not result["teen"].below and result["teen"].threshold == "6 hours"
    sud = {w.patient_id: w for w in weekly(days, adolescent={}, substance_use=True)}
    assert sud["adult"].days_meeting_daily == 2 and sud["adult"].below


def test_by_day_adds_sessions_on_the_same_day() -> None:
    events = [Event("p", "admitted", t("18:00")), Event("p", "left", t("19:00"))]
    one = session_attendance(events, [], t("21:00"))
    assert by_day([(D, one), (D, one)]) == {"p": {D: 120.0}}
