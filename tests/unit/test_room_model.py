"""The room model: transitions and the permission check, without any server."""

import datetime as dt

import pytest

from rooms.model import (
    PERMISSIONS,
    Identity,
    Presence,
    Room,
    RoomAction,
    RoomError,
    RoomRole,
    RoomState,
)

T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)


def _room() -> Room:
    return Room("r1", "Evening", "group", T0)


def _people(room: Room):  # type: ignore[no-untyped-def]
    host = room.arrive(Identity("staff", "h"), RoomRole.HOST, "Host", T0)
    cohost = room.arrive(Identity("staff", "c"), RoomRole.COHOST, "Co", T0)
    observer = room.arrive(Identity("staff", "o"), RoomRole.OBSERVER, "Obs", T0)
    patient = room.arrive(Identity("patient", "p"), RoomRole.PARTICIPANT, "Pat", T0)
    return host, cohost, observer, patient


def test_staff_enter_directly_and_patients_wait() -> None:
    host, cohost, observer, patient = _people(_room())
    assert [m.presence for m in (host, cohost, observer)] == [Presence.ADMITTED] * 3
    assert patient.presence is Presence.WAITING


def test_admit_moves_a_waiting_patient_in_and_only_staff_may_admit() -> None:
    room = _room()
    host, _, observer, patient = _people(room)
    other = room.arrive(Identity("patient", "q"), RoomRole.PARTICIPANT, "Q", T0)
    with pytest.raises(RoomError) as caught:
        room.admit(observer, patient.id, T0)
    assert caught.value.code == "forbidden"
    room.admit(host, patient.id, T0)
    assert patient.presence is Presence.ADMITTED
    with pytest.raises(RoomError):
        room.admit(patient, other.id, T0)
    with pytest.raises(RoomError) as again:
        room.admit(host, patient.id, T0)
    assert again.value.code == "not_waiting"


def test_admit_all_admits_everyone_waiting_longest_first_listing() -> None:
    room = _room()
    host = room.arrive(Identity("staff", "h"), RoomRole.HOST, "Host", T0)
    late = room.arrive(Identity("patient", "b"), RoomRole.PARTICIPANT, "B", T0 + dt.timedelta(1))
    early = room.arrive(Identity("patient", "a"), RoomRole.PARTICIPANT, "A", T0)
    assert room.waiting() == [early, late]
    assert set(room.admit_all(host, T0)) == {early, late}
    assert room.waiting() == []


def test_a_locked_room_turns_away_newcomers_but_not_known_members() -> None:
    room = _room()
    host, _, _, patient = _people(room)
    room.admit(host, patient.id, T0)
    room.set_locked(host, True)
    with pytest.raises(RoomError) as caught:
        room.arrive(Identity("patient", "new"), RoomRole.PARTICIPANT, "New", T0)
    assert caught.value.code == "locked"
    room.disconnect(patient.id, T0)
    assert room.arrive(patient.identity, RoomRole.PARTICIPANT, "Pat", T0) is patient
    assert patient.presence is Presence.ADMITTED


def test_a_removed_patient_cannot_return_until_readmitted() -> None:
    room = _room()
    host, _, _, patient = _people(room)
    room.admit(host, patient.id, T0)
    room.remove(host, patient.id, T0)
    assert patient.presence is Presence.REMOVED
    with pytest.raises(RoomError) as caught:
        room.arrive(patient.identity, RoomRole.PARTICIPANT, "Pat", T0)
    assert caught.value.code == "removed"
    room.admit(host, patient.id, T0)
    back = room.arrive(patient.identity, RoomRole.PARTICIPANT, "Pat", T0)
    assert back.presence is Presence.ADMITTED


def test_staff_cannot_be_removed_or_muted() -> None:
    room = _room()
    host, cohost, _, _ = _people(room)
    with pytest.raises(RoomError):
        room.remove(host, cohost.id, T0)
    with pytest.raises(RoomError):
        room.block_media(cohost, host.id, audio=True, video=None)


def test_mute_and_the_request_to_unmute() -> None:
    room = _room()
    host, _, _, patient = _people(room)
    room.admit(host, patient.id, T0)
    with pytest.raises(RoomError):
        room.ask_unmute(patient)
    room.block_media(host, patient.id, audio=True, video=None)
    assert patient.audio_blocked and not patient.video_blocked
    room.ask_unmute(patient)
    assert patient.unmute_requested
    room.block_media(host, patient.id, audio=False, video=None)
    assert not patient.audio_blocked and not patient.unmute_requested


def test_hands_are_raised_by_their_owner_and_lowered_by_staff() -> None:
    room = _room()
    host, _, observer, patient = _people(room)
    room.admit(host, patient.id, T0)
    room.set_hand(patient, patient.id, True)
    assert patient.hand_raised
    with pytest.raises(RoomError):
        room.set_hand(host, patient.id, True)
    with pytest.raises(RoomError):
        room.set_hand(observer, patient.id, False)
    room.set_hand(host, patient.id, False)
    assert not patient.hand_raised


def test_a_waiting_patient_can_do_nothing_in_the_room() -> None:
    room = _room()
    _, _, _, patient = _people(room)
    for action in (RoomAction.CHAT_ROOM, RoomAction.RAISE_HAND, RoomAction.REACT):
        with pytest.raises(RoomError) as caught:
            room.check(patient, action)
        assert caught.value.code == "not_admitted"


def test_only_the_host_ends_the_session_and_nobody_enters_after() -> None:
    room = _room()
    host, cohost, _, _ = _people(room)
    with pytest.raises(RoomError):
        room.end(cohost)
    room.start(cohost)
    assert room.state is RoomState.LIVE
    room.end(host)
    assert room.state is RoomState.ENDED
    with pytest.raises(RoomError) as caught:
        room.arrive(Identity("patient", "z"), RoomRole.PARTICIPANT, "Z", T0)
    assert caught.value.code == "ended"


def test_disconnect_gives_admitted_members_a_grace_period_and_waiters_leave() -> None:
    room = _room()
    host, _, _, patient = _people(room)
    waiter = room.arrive(Identity("patient", "w"), RoomRole.PARTICIPANT, "W", T0)
    room.admit(host, patient.id, T0)
    room.disconnect(patient.id, T0)
    room.disconnect(waiter.id, T0)
    assert patient.presence is Presence.RECONNECTING
    assert waiter.presence is Presence.LEFT
    assert room.expire(patient.id, T0) is patient
    assert patient.presence is Presence.LEFT
    assert room.expire(patient.id, T0) is None


def test_patients_see_who_is_in_the_room_but_not_a_hidden_observer() -> None:
    room = _room()
    host, cohost, observer, patient = _people(room)
    waiter = room.arrive(Identity("patient", "w"), RoomRole.PARTICIPANT, "W", T0)
    room.admit(host, patient.id, T0)
    assert set(room.visible_to(patient)) == {host, cohost, patient}
    assert set(room.visible_to(host)) == {host, cohost, observer, patient, waiter}


def test_every_role_has_a_permission_row() -> None:
    assert set(PERMISSIONS) == set(RoomRole)
    assert RoomAction.END in PERMISSIONS[RoomRole.HOST]
    assert RoomAction.END not in PERMISSIONS[RoomRole.COHOST]
    assert not PERMISSIONS[RoomRole.OBSERVER] & {RoomAction.ADMIT, RoomAction.REMOVE}
