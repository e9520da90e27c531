"""Clock arithmetic: absolute timestamps survive pauses, extensions, jumps, midnight and DST."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms.clock import CheckinRound, ClockError, SessionClock
from rooms.structure import SHIPPED, Phase, StructureError, Template

LA = ZoneInfo("America/Los_Angeles")
EVENING = SHIPPED[0]


def _clock() -> SessionClock:
    return SessionClock(list(EVENING.phases))


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=LA).astimezone(dt.UTC)


def test_shipped_templates_have_the_planned_lengths() -> None:
    assert [(t.name, t.minutes) for t in SHIPPED] == [
        ("evening-group-180", 180),
        ("group-90", 90),
        ("individual-50", 50),
        ("psychiatry-25", 25),
        ("tech-test-10", 10),
        ("family-50", 50),
    ]
    assert [p.kind for p in EVENING.phases] == [
        "arrival",
        "grounding",
        "checkin_round",
        "core",
        "break",
        "process",
        "integration",
    ]


def test_remaining_counts_down_and_goes_negative_in_overtime() -> None:
    clock = _clock()
    t0 = _at("2026-11-23T18:00:00")
    clock.start(t0)
    assert clock.remaining_s(t0) == 600
    view = clock.view(t0 + dt.timedelta(minutes=8, seconds=30))
    assert view["warning"] and not view["overtime"]
    late = clock.view(t0 + dt.timedelta(minutes=11))
    assert late["remaining_s"] == -60 and late["overtime"] and not late["warning"]


def test_pause_freezes_and_resume_continues_across_midnight() -> None:
    clock = _clock()
    t0 = _at("2026-11-23T23:55:00")
    clock.start(t0)
    clock.pause(t0 + dt.timedelta(minutes=2))
    assert clock.remaining_s(t0 + dt.timedelta(hours=1)) == 480
    clock.resume(_at("2026-11-24T00:30:00"))
    assert clock.remaining_s(_at("2026-11-24T00:31:00")) == 420


def test_extend_and_jump_across_the_spring_daylight_saving_change() -> None:
    clock = SessionClock([Phase("core", "Long core", 240), Phase("break", "Break", 10)])
    start = _at("2027-03-14T01:00:00")  # PST; clocks jump from 02:00 to 03:00
    clock.start(start)
    later = dt.datetime(2027, 3, 14, 4, 0, tzinfo=LA).astimezone(dt.UTC)  # 2 real hours later
    assert clock.elapsed_s(later) == 2 * 3600
    clock.extend(15)
    assert clock.remaining_s(later) == (240 + 15) * 60 - 2 * 3600
    clock.jump(1, later)
    assert clock.extension_s == 0 and clock.remaining_s(later) == 600
    assert clock.history[0]["kind"] == "core"


def test_the_fall_back_change_does_not_repeat_an_hour() -> None:
    clock = SessionClock([Phase("process", "Process", 180)])
    start = dt.datetime(2026, 11, 1, 0, 30, tzinfo=LA).astimezone(dt.UTC)
    clock.start(start)
    after = dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=LA).astimezone(dt.UTC)  # PST
    assert clock.elapsed_s(after) == 2 * 3600


def test_next_previous_end_and_misuse() -> None:
    clock = _clock()
    t0 = _at("2026-11-23T18:00:00")
    with pytest.raises(ClockError):
        clock.pause(t0)
    clock.start(t0)
    with pytest.raises(ClockError):
        clock.previous(t0)
    clock.next(t0 + dt.timedelta(minutes=10))
    assert clock.phase.kind == "grounding"
    clock.previous(t0 + dt.timedelta(minutes=11))
    assert clock.phase.kind == "arrival" and clock.remaining_s(t0 + dt.timedelta(minutes=11)) == 600
    clock.jump(6, t0 + dt.timedelta(minutes=12))
    with pytest.raises(ClockError):
        clock.next(t0)
    clock.end(t0 + dt.timedelta(minutes=20))
    assert clock.status == "ended" and len(clock.history) == 4


def test_a_paused_jump_stays_paused_in_the_new_phase() -> None:
    clock = _clock()
    t0 = _at("2026-11-23T18:00:00")
    clock.start(t0)
    clock.pause(t0 + dt.timedelta(minutes=3))
    clock.next(t0 + dt.timedelta(minutes=5))
    assert clock.status == "paused"
    assert clock.remaining_s(t0 + dt.timedelta(minutes=9)) == 300
    clock.resume(t0 + dt.timedelta(minutes=10))
    assert clock.remaining_s(t0 + dt.timedelta(minutes=11)) == 240


def test_the_plan_of_one_session_can_change() -> None:
    clock = _clock()
    clock.set_minutes(3, 75)
    clock.drop(4)
    clock.reorder([0, 1, 2, 4, 3, 5])
    assert [p.kind for p in clock.phases] == [
        "arrival",
        "grounding",
        "checkin_round",
        "process",
        "core",
        "integration",
    ]
    clock.start(_at("2026-11-23T18:00:00"))
    with pytest.raises(ClockError):
        clock.drop(0)
    with pytest.raises(ClockError):
        clock.reorder([0, 1, 2, 3, 4, 5])
    clock.reorder([2, 1, 3, 4, 5])
    assert clock.phases[1].kind == "checkin_round"
    with pytest.raises(ClockError):
        clock.set_minutes(0, 0)


def test_checkin_queue_operations_and_turn_timer() -> None:
    t0 = _at("2026-11-23T18:20:00")
    round_ = CheckinRound(150)
    for member in ("a", "b", "c", "d"):
        round_.add_late(member, t0)
    assert round_.current == "a" and round_.queue == ["b", "c", "d"]
    assert round_.turn_remaining_s(t0 + dt.timedelta(seconds=130), None) == 20
    round_.reorder(["d", "c", "b"])
    round_.next(t0 + dt.timedelta(minutes=2))
    assert round_.current == "d"
    round_.to_end("d", t0 + dt.timedelta(minutes=3))
    assert round_.current == "c" and round_.queue == ["b", "d"]
    round_.pass_turn("b", t0)
    round_.skip("c", t0 + dt.timedelta(minutes=4))
    assert round_.current == "d" and round_.passed == ["b", "c"]
    round_.to_end("b", t0)
    round_.add_late("e", t0)
    assert round_.queue == ["b", "e"]
    with pytest.raises(ClockError):
        round_.reorder(["e"])
    round_.next(t0)
    round_.next(t0)
    round_.next(t0)
    assert round_.current is None and round_.done == ["a", "d", "b", "e"]
    with pytest.raises(ClockError):
        round_.to_end("a", t0)


def test_a_pause_holds_the_speakers_turn_too() -> None:
    clock = _clock()
    t0 = _at("2026-11-23T18:00:00")
    clock.start(t0)
    clock.jump(2, t0)
    assert clock.checkin is not None
    clock.checkin.add_late("a", t0)
    clock.pause(t0 + dt.timedelta(seconds=60))
    clock.resume(t0 + dt.timedelta(seconds=300))
    assert clock.view(t0 + dt.timedelta(seconds=310))["turn_remaining_s"] == 80


@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["pause", "resume", "extend", "next", "previous", "wait"]),
            st.integers(min_value=1, max_value=3600),
        ),
        max_size=30,
    )
)
def test_state_round_trips_through_json_and_time_is_consistent(
    steps: list[tuple[str, int]],
) -> None:
    clock = _clock()
    now = _at("2026-11-23T18:00:00")
    clock.start(now)
    for op, amount in steps:
        now += dt.timedelta(seconds=amount)
        try:
            if op == "extend":
                clock.extend(1 + amount % 60)
            elif op != "wait":
                getattr(clock, op)(now)
        except ClockError:
            pass
        again = SessionClock.from_json(clock.to_json())
        assert again.remaining_s(now) == clock.remaining_s(now)
        assert clock.elapsed_s(now) >= 0


def test_templates_validate_their_phases() -> None:
    with pytest.raises(StructureError):
        Phase("nap", "Nap", 10)
    with pytest.raises(StructureError):
        Phase("grounding", "G", 5, {"exercise": "yodel"})
    with pytest.raises(StructureError):
        Template("empty", "Empty", ())
