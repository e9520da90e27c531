"""The crisis domain without storage: routing deadlines, step validation, notifications."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from crisis import ledger, routing
from crisis.notify import (
    EventStream,
    Notification,
    StreamClosedError,
    retry_delay,
    signature,
    signature_matches,
)

RAISED = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)


class FakeClock:
    """Time that moves only when told to."""

    def __init__(self, start: dt.datetime) -> None:
        self.at = start

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += dt.timedelta(**delta)


def _due(plan: list[routing.Deadline], clock: FakeClock) -> list[str]:
    return [deadline.purpose for deadline in plan if deadline.due_at <= clock.now()]


def test_a_high_event_repages_at_60s_adds_the_backup_at_2min_and_the_director_at_5min() -> None:
    clock = FakeClock(RAISED)
    plan = routing.deadlines(routing.DEFAULT_POLICY, "high", clock.now())
    assert [(d.due_at - RAISED, d.page) for d in plan] == [
        (dt.timedelta(seconds=60), ("primary",)),
        (dt.timedelta(minutes=2), ("primary", "backup")),
        (dt.timedelta(minutes=5), ("medical_director",)),
    ]
    clock.advance(seconds=59)
    assert _due(plan, clock) == []
    clock.advance(seconds=1)
    assert _due(plan, clock) == ["ack-high-1"]
    clock.advance(minutes=4)
    assert _due(plan, clock) == ["ack-high-1", "ack-high-2", "ack-high-3"]
    # Whoever was paged before a rung is who missed it.
    assert plan[0].waiting_on == ("facilitator", "cofacilitator", "primary")
    assert plan[2].waiting_on == ("facilitator", "cofacilitator", "primary", "backup")
    assert all(routing.cancelled_by_ack(d.purpose) for d in plan)


def test_moderate_waits_five_minutes_and_low_waits_for_the_session_end() -> None:
    (moderate,) = routing.deadlines(routing.DEFAULT_POLICY, "moderate", RAISED)
    assert moderate.due_at - RAISED == dt.timedelta(minutes=5)
    assert routing.DEFAULT_POLICY.moderate.ack_within == dt.timedelta(minutes=5)
    ends = RAISED + dt.timedelta(hours=2)
    (low,) = routing.deadlines(routing.DEFAULT_POLICY, "low", RAISED, ends)
    assert low.due_at == ends and low.page == ()
    with pytest.raises(routing.PolicyError):
        routing.DEFAULT_POLICY.for_level("none")


def test_a_policy_round_trips_and_bad_ladders_are_refused_by_field() -> None:
    stored = routing.policy_to_json(routing.DEFAULT_POLICY)
    assert routing.policy_from_json(stored) == routing.DEFAULT_POLICY
    custom = routing.policy_from_json(
        {"high": {"escalations": [{"after_s": 30, "page": ["backup"]}]}}
    )
    assert custom.high.ack_within == dt.timedelta(seconds=30)
    assert custom.moderate == routing.DEFAULT_POLICY.moderate
    bad = [
        (
            {"high": {"escalations": [{"after_s": 60, "page": ["janitor"]}]}},
            "high.escalations.0.page",
        ),
        (
            {
                "high": {
                    "escalations": [
                        {"after_s": 60, "page": ["primary"]},
                        {"after_s": 30, "page": ["backup"]},
                    ]
                }
            },
            "high.escalations.1.after_s",
        ),
        (
            {"high": {"escalations": [{"after_s": 0, "page": ["primary"]}]}},
            "high.escalations.0.after_s",
        ),
        ({"low": {"escalations": [{"after_s": 5, "page": ["primary"]}]}}, "low.escalations"),
        ({"urgent": {}}, "urgent"),
        ({"high": {"page_first": []}}, "high.page_first"),
    ]
    for raw, field in bad:
        with pytest.raises(routing.PolicyError) as refused:
            routing.policy_from_json(raw)
        assert refused.value.field == field


def test_levels_rank_so_a_higher_concern_restarts_routing() -> None:
    assert routing.more_urgent("high", "moderate")
    assert not routing.more_urgent("moderate", "high")
    assert not routing.more_urgent("high", "high")


def test_a_call_step_needs_a_phone_number_an_agency_and_ordered_times() -> None:
    good = {
        "number": "(555) 010-0911",
        "agency": "County PSAP (example)",
        "incident_number": "INC-1",
        "started_at": "2026-11-23T18:00:00+00:00",
        "ended_at": "2026-11-23T18:05:00Z",
    }
    step = ledger.parse_staff_step("call_logged", good, RAISED, substance_use=False)
    assert isinstance(step, ledger.CallLogged)
    assert step.payload()["ended_at"] == "2026-11-23T18:05:00+00:00"
    assert ledger.parse_staff_step(
        "call_logged", {**good, "number": "988"}, RAISED, substance_use=False
    )
    for change, field in [
        ({"number": "not a number"}, "number"),
        ({"agency": ""}, "agency"),
        ({"started_at": "2026-11-23T18:00:00"}, "started_at"),
        ({"ended_at": "2026-11-23T17:00:00+00:00"}, "ended_at"),
        ({"extra": "x"}, "extra"),
    ]:
        with pytest.raises(ledger.InvalidStepError) as refused:
            ledger.parse_staff_step("call_logged", {**good, **change}, RAISED, substance_use=False)
        assert refused.value.field == field


def test_part2_disclosures_only_in_substance_use_programs() -> None:
    fields = {
        "recipient": "Dr. Example, ED",
        "facility": "Example General (example)",
        "disclosed_by": "Casey Lead",
        "disclosed_at": "2026-11-23T18:10:00+00:00",
        "nature_of_emergency": "suspected overdose",
    }
    with pytest.raises(ledger.InvalidStepError):
        ledger.parse_staff_step("part2_disclosure", fields, RAISED, substance_use=False)
    step = ledger.parse_staff_step("part2_disclosure", fields, RAISED, substance_use=True)
    assert isinstance(step, ledger.Part2Disclosure)


def test_a_follow_up_is_due_within_24_hours_by_default() -> None:
    step = ledger.parse_staff_step("follow_up_task", {}, RAISED, substance_use=False)
    assert isinstance(step, ledger.FollowUpTask)
    assert step.due_at == RAISED + dt.timedelta(hours=24)


def test_state_rules_ack_once_sign_off_after_a_disposition_amend_after_close() -> None:
    ledger.check_can_acknowledge("open")
    for state in ("acknowledged", "closed"):
        with pytest.raises(ledger.InvalidStateError):
            ledger.check_can_acknowledge(state)
    with pytest.raises(ledger.InvalidStateError):
        ledger.check_can_sign_off("open", ["raised", "disposition"])
    with pytest.raises(ledger.InvalidStateError):
        ledger.check_can_sign_off("acknowledged", ["raised", "acknowledged"])
    ledger.check_can_sign_off("acknowledged", ["raised", "acknowledged", "disposition"])
    note = ledger.DebriefNote("the group was told the patient is safe")
    ledger.check_can_append("closed", note, 5)
    with pytest.raises(ledger.InvalidStateError):
        ledger.check_can_append("closed", ledger.Disposition("other"), 5)
    with pytest.raises(ledger.InvalidStepError):
        ledger.check_can_append("open", ledger.Amendment(9, "typo", "x"), 5)
    assert ledger.state_after("open", ledger.Acknowledged()) == "acknowledged"
    assert ledger.state_after("acknowledged", ledger.SignedOff()) == "closed"


def _notification(kind: str = "raised", notification_id: str = "n1") -> Notification:
    return Notification(
        notification_id, "e1", "p1", "high", kind, ("primary",), RAISED, "https://x/e1"
    )


def test_the_signature_is_an_hmac_of_the_exact_body() -> None:
    body = _notification().body()
    header = signature(body, b"secret")
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert signature_matches(body, b"secret", header)
    assert not signature_matches(body + b" ", b"secret", header)
    assert not signature_matches(body, b"other", header)


def test_retries_back_off_exponentially_with_bounded_jitter() -> None:
    base = dt.timedelta(seconds=5)
    low = [retry_delay(n, lambda: 0.0, base) for n in range(1, 5)]
    high = [retry_delay(n, lambda: 1.0, base) for n in range(1, 5)]
    assert [d.total_seconds() for d in low] == [2.5, 5, 10, 20]
    assert [d.total_seconds() for d in high] == [5, 10, 20, 40]
    assert retry_delay(40, lambda: 1.0, base) == dt.timedelta(minutes=10)
    with pytest.raises(ValueError):
        retry_delay(0, lambda: 0.5)


async def test_the_event_stream_fans_out_and_drops_a_listener_that_stops_reading() -> None:
    stream = EventStream(buffer=2)
    reader, idle = stream.subscribe(), stream.subscribe()
    for kind in ("raised", "escalation", "acknowledged"):
        stream.publish(_notification(kind, f"n-{kind}"))
        assert (await asyncio.wait_for(reader.next(), 1)).kind == kind
    assert idle.dropped and stream.subscribers == 1
    with pytest.raises(StreamClosedError):
        while True:
            await asyncio.wait_for(idle.next(), 1)
    stream.close()
    assert [n async for n in reader] == []
    with pytest.raises(StreamClosedError):
        stream.subscribe()


async def test_the_event_stream_publishes_each_notification_id_once() -> None:
    stream = EventStream()
    reader = stream.subscribe()
    # The committing process publishes at once; the outbox poll's copy is then ignored.
    assert stream.publish(_notification("raised", "same"))
    assert not stream.publish(_notification("raised", "same"))
    assert stream.publish(_notification("acknowledged", "other"))
    assert [(await reader.next()).id, (await reader.next()).id] == ["same", "other"]


def test_an_assignment_names_who_and_is_refused_on_a_closed_event() -> None:
    step = ledger.Assigned.parse({"staff_id": "s-2", "previous": "s-1", "note": " over "}, RAISED)
    assert step.payload() == {"staff_id": "s-2", "previous": "s-1", "note": "over"}
    for bad in ({}, {"staff_id": ""}, {"staff_id": 3}, {"staff_id": "s", "extra": 1}):
        with pytest.raises(ledger.InvalidStepError):
            ledger.Assigned.parse(bad, RAISED)
    ledger.check_can_assign("open")
    ledger.check_can_assign("acknowledged")
    with pytest.raises(ledger.InvalidStateError):
        ledger.check_can_assign("closed")


def test_a_note_is_a_staff_step_with_text() -> None:
    note = ledger.parse_staff_step(
        "note", {"note": "called the backup phone"}, RAISED, substance_use=False
    )
    assert note.KIND == "note"
    with pytest.raises(ledger.InvalidStepError):
        ledger.parse_staff_step("note", {"note": "  "}, RAISED, substance_use=False)
