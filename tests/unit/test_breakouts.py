"""Breakout rooms: the splitter (property-tested), the state, and the hub with moving time."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms import protocol as p
from rooms.breakouts import BreakoutError, Breakouts, SplitMode, split, split_by_hand
from rooms.events import QuietEvents
from rooms.hub import RoomHub
from rooms.model import Identity, Room, RoomRole

T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)
people_lists = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=40, unique=True)


def _balanced(groups: list[list[str]]) -> bool:
    sizes = [len(g) for g in groups]
    return min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@given(people_lists, st.integers(min_value=1, max_value=20), st.integers())
def test_random_split_places_everyone_exactly_once_in_balanced_rooms(
    people: list[str], rooms: int, seed: int
) -> None:
    groups = split(SplitMode.RANDOM, people, rooms=rooms, rng=random.Random(seed))
    placed = [person for group in groups for person in group]
    assert sorted(placed) == sorted(people)
    assert len(groups) == min(rooms, len(people))
    assert _balanced(groups)


@given(people_lists, st.sampled_from([SplitMode.PAIRS, SplitMode.TRIADS]), st.integers())
def test_pairs_and_triads_place_everyone_once_in_groups_of_about_that_size(
    people: list[str], mode: SplitMode, seed: int
) -> None:
    size = 2 if mode is SplitMode.PAIRS else 3
    groups = split(mode, people, rng=random.Random(seed))
    assert sorted(p for g in groups for p in g) == sorted(people)
    assert _balanced(groups)
    if len(people) >= size:
        assert all(size <= len(g) < 2 * size for g in groups)


@given(people_lists, st.integers(min_value=1, max_value=5), st.integers())
def test_a_split_by_hand_is_accepted_exactly_when_everyone_is_placed_once(
    people: list[str], rooms: int, seed: int
) -> None:
    rng = random.Random(seed)
    groups: list[list[str]] = [[] for _ in range(rooms)]
    for person in people:
        groups[rng.randrange(rooms)].append(person)
    assert sorted(x for g in split_by_hand(people, groups) for x in g) == sorted(people)
    with pytest.raises(BreakoutError):
        split_by_hand(people, [*groups, [people[0]]])  # someone twice
    if len(people) > 1:
        with pytest.raises(BreakoutError):
            split_by_hand(people, [g for g in groups if people[0] not in g] or [[people[1]]])


def test_by_hand_refuses_strangers_and_empty_rooms_only() -> None:
    with pytest.raises(BreakoutError, match="not in the room"):
        split_by_hand(["a"], [["a"], ["z"]])
    assert split_by_hand(["a", "b"], [["a"], [], ["b"]]) == [["a"], ["b"]]


def test_seven_in_pairs_is_three_rooms_and_in_triads_two() -> None:
    seven = [str(i) for i in range(7)]
    rng = random.Random(1)
    assert sorted(len(g) for g in split(SplitMode.PAIRS, seven, rng=rng)) == [2, 2, 3]
    assert sorted(len(g) for g in split(SplitMode.TRIADS, seven, rng=rng)) == [3, 4]


def test_the_timer_warns_once_a_minute_before_and_recalls_at_the_end() -> None:
    state = Breakouts.open([["a"], ["b"]], " Practise DEAR MAN ", 10, T0)
    assert state.prompt == "Practise DEAR MAN"
    assert state.due(T0 + dt.timedelta(minutes=8, seconds=59)) is None
    assert state.due(T0 + dt.timedelta(minutes=9)) == "warning"
    state.warned = True
    assert state.due(T0 + dt.timedelta(minutes=9, seconds=30)) is None
    assert state.due(T0 + dt.timedelta(minutes=10)) == "recall"
    with pytest.raises(BreakoutError):
        Breakouts.open([["a"]], "", 0, T0)


def test_state_survives_its_saved_form_with_visits_and_calls() -> None:
    state = Breakouts.open([["a", "b"], ["c"]], "x", 5, T0)
    state.visit("staff:h", "b2")
    state.call("a", T0)
    state.move("b", "b2")
    again = Breakouts.from_json(state.to_json())
    assert again.to_json() == state.to_json()
    assert again.room_of("b") == "b2" and again.room_of("staff:h") == "b2"
    assert again.members_of("b2") == {"b", "c", "staff:h"}
    assert again.view(T0, viewer="a")["called"] is True
    state.visit("staff:h", "b1")  # staff arrive: the call from b1 is answered
    assert state.calls == {}


# The hub ----------------------------------------------------------------------------------


class Socket:
    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> bool:
        self.sent.append(message)
        return True

    async def close(self, code: int, reason: str) -> None:
        pass


class Spaces(QuietEvents):
    """Room events that keep where media flows for each member, and the saved room."""

    def __init__(self) -> None:
        self.hub: RoomHub | None = None
        self.spaces: dict[str, str | None] = {}
        self.saved: dict[str, Any] = {}

    def member_changed(self, member: Any) -> None:
        assert self.hub is not None
        self.spaces[member.id] = self.hub.room.media_space(member)

    def room_saved(self, persisted: dict[str, Any]) -> None:
        self.saved = persisted


class Time:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def _room() -> tuple[RoomHub, Spaces, Time, dict[str, Socket]]:
    events, time = Spaces(), Time()
    hub = RoomHub(Room("r1", "Evening", "group", T0), clock=time, events=events)
    events.hub = hub
    sockets: dict[str, Socket] = {}
    for kind, id_, role in (
        ("staff", "h", RoomRole.HOST),
        ("staff", "o", RoomRole.OBSERVER),
        ("patient", "a", RoomRole.PARTICIPANT),
        ("patient", "b", RoomRole.PARTICIPANT),
        ("patient", "c", RoomRole.PARTICIPANT),
    ):
        socket = Socket(f"{kind}:{id_}")
        hub.connect(socket, Identity(kind, id_), role, id_.upper(), None)
        sockets[id_] = socket
    hub.handle(sockets["h"], p.AdmitAll(type="admit_all"))
    return hub, events, time, sockets


def _start(hub: RoomHub, host: Socket) -> None:
    hub.handle(
        host,
        p.BreakoutsStart(
            type="breakouts_start",
            mode="hand",
            assign=[["patient:a", "patient:b"], ["patient:c"]],
            prompt="Practise DEAR MAN",
            minutes=10,
        ),
    )


def _last(socket: Socket, kind: str) -> dict[str, Any]:
    return next(m for m in reversed(socket.sent) if m["type"] == kind)


def test_only_host_and_cohost_open_breakouts_and_patients_see_only_their_own() -> None:
    hub, events, _time, s = _room()
    for who in ("a", "o"):
        with pytest.raises(p.ProtocolError) as refused:
            _start(hub, s[who])
        assert refused.value.code == "forbidden"
    _start(hub, s["h"])
    assert events.spaces["patient:a"] == events.spaces["patient:b"] == "breakout-b1"
    assert events.spaces["patient:c"] == "breakout-b2"
    assert events.spaces["staff:h"] is None
    mine = _last(s["c"], "breakouts")["breakouts"]
    assert mine["room"] == {"id": "b2", "name": "Room 2", "members": ["patient:c"], "visitors": []}
    assert mine["prompt"] == "Practise DEAR MAN" and "rooms" not in mine
    assert len(_last(s["h"], "breakouts")["breakouts"]["rooms"]) == 2
    assert events.saved["breakouts"]["rooms"][1]["members"] == ["patient:c"]


def test_visits_calls_broadcast_and_moves() -> None:
    hub, events, _time, s = _room()
    _start(hub, s["h"])
    hub.handle(s["c"], p.FacilitatorCall(type="facilitator_call"))
    call = _last(s["o"], "facilitator_call")
    assert (call["member_id"], call["breakout_name"]) == ("patient:c", "Room 2")
    assert not [m for m in s["a"].sent if m["type"] == "facilitator_call"]
    hub.handle(s["o"], p.BreakoutVisit(type="breakout_visit", breakout_id="b2"))
    assert events.spaces["staff:o"] == "breakout-b2"
    assert _last(s["c"], "breakouts")["breakouts"]["called"] is False
    # A supervisor looks in unseen; the host's visit is shown to the patients there.
    assert _last(s["c"], "breakouts")["breakouts"]["room"]["visitors"] == []
    hub.handle(s["h"], p.BreakoutVisit(type="breakout_visit", breakout_id="b2"))
    assert _last(s["c"], "breakouts")["breakouts"]["room"]["visitors"] == ["staff:h"]
    hub.handle(s["h"], p.BreakoutVisit(type="breakout_visit", breakout_id=None))
    hub.handle(
        s["h"], p.BreakoutMove(type="breakout_move", member_id="patient:a", breakout_id="b2")
    )
    assert events.spaces["patient:a"] == "breakout-b2"
    hub.handle(s["h"], p.BreakoutBroadcast(type="breakout_broadcast", text="Two minutes"))
    assert all(_last(x, "breakout_broadcast")["text"] == "Two minutes" for x in s.values())
    with pytest.raises(p.ProtocolError):
        hub.handle(s["h"], p.BreakoutVisit(type="breakout_visit", breakout_id="b9"))


def test_help_in_a_breakout_still_reaches_every_staff_member() -> None:
    hub, _events, _time, s = _room()
    _start(hub, s["h"])
    hub.handle(s["a"], p.Help(type="help", text=""))
    assert _last(s["o"], "help")["from"] == "patient:a"
    assert _last(s["h"], "help")["from"] == "patient:a"


def test_the_timer_warns_then_recalls_everyone_when_time_moves_on() -> None:
    hub, events, time, s = _room()
    _start(hub, s["h"])
    time.now = T0 + dt.timedelta(minutes=9, seconds=1)
    hub.tick()
    assert _last(s["a"], "breakouts")["breakouts"]["warning"] is True
    warned = len(s["a"].sent)
    hub.tick()
    assert len(s["a"].sent) == warned  # the warning is given once
    time.now = T0 + dt.timedelta(minutes=10)
    hub.tick()
    back = _last(s["a"], "breakouts")
    assert back["breakouts"] is None and back["recalled"] == "timer"
    assert set(events.spaces.values()) == {None}
    assert events.saved["breakouts"] is None


async def test_a_patient_who_drops_comes_back_to_their_breakout_and_a_restart_keeps_it() -> None:
    hub, events, time, s = _room()
    _start(hub, s["h"])
    hub.disconnect(s["c"])
    assert events.spaces["patient:c"] == "breakout-b2"  # reconnecting: still placed there
    again = Socket("patient:c")
    hub.connect(again, Identity("patient", "c"), RoomRole.PARTICIPANT, "C", None)
    assert again.sent[0]["breakouts"]["room"]["id"] == "b2"
    hub.close()
    restored = RoomHub(Room("r1", "Evening", "group", T0), clock=time, events=QuietEvents())
    restored.room.restore(events.saved, T0)
    assert restored.room.breakouts is not None
    assert restored.room.media_space(restored.room.members["patient:c"]) == "breakout-b2"


def test_the_permission_table_gives_breakouts_to_facilitators_and_calls_to_patients() -> None:
    from rooms.model import PERMISSIONS, RoomAction

    runs = {r for r in RoomRole if RoomAction.RUN_BREAKOUTS in PERMISSIONS[r]}
    visits = {r for r in RoomRole if RoomAction.VISIT_BREAKOUT in PERMISSIONS[r]}
    calls = {r for r in RoomRole if RoomAction.CALL_FACILITATOR in PERMISSIONS[r]}
    assert runs == {RoomRole.HOST, RoomRole.COHOST}
    assert visits == {RoomRole.HOST, RoomRole.COHOST, RoomRole.OBSERVER}
    assert calls == {RoomRole.PARTICIPANT}


def test_a_patient_outside_any_breakout_cannot_call_and_nothing_runs_after_recall() -> None:
    hub, _events, _time, s = _room()
    with pytest.raises(p.ProtocolError) as none_open:
        hub.handle(s["a"], p.FacilitatorCall(type="facilitator_call"))
    assert none_open.value.code == "no_breakouts"
    hub.handle(
        s["h"],
        p.BreakoutsStart(
            type="breakouts_start",
            mode="hand",
            assign=[["patient:a", "patient:b", "patient:c"]],
            minutes=5,
        ),
    )
    hub.handle(
        s["h"], p.BreakoutMove(type="breakout_move", member_id="patient:c", breakout_id=None)
    )
    with pytest.raises(p.ProtocolError) as outside:
        hub.handle(s["c"], p.FacilitatorCall(type="facilitator_call"))
    assert outside.value.code == "not_in_breakout"
    assert _last(s["c"], "breakouts")["breakouts"]["elsewhere"] == ["patient:a", "patient:b"]
    hub.handle(s["h"], p.BreakoutsRecall(type="breakouts_recall"))
    with pytest.raises(p.ProtocolError):
        hub.handle(s["h"], p.BreakoutsRecall(type="breakouts_recall"))
