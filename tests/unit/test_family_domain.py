"""Family sessions in the domain: the support person's role, what they see, what consents."""

from __future__ import annotations

import datetime as dt

import pytest

from rooms.consent import PATIENT_KINDS, SUPPORT_PERSON_KINDS, required_kinds
from rooms.model import (
    PERMISSIONS,
    Identity,
    Member,
    Presence,
    Room,
    RoomAction,
    RoomError,
    RoomRole,
    check_role,
)

T0 = dt.datetime(2026, 12, 4, 18, 0, tzinfo=dt.UTC)


def _family_room() -> tuple[Room, dict[str, Member]]:
    room = Room("r1", "Family session", "family", T0, observers_visible=True)
    people = {
        "host": room.arrive(Identity("staff", "h"), RoomRole.HOST, "Clinician", T0),
        "observer": room.arrive(Identity("staff", "o"), RoomRole.OBSERVER, "Supervisor", T0),
        "patient": room.arrive(Identity("patient", "p"), RoomRole.PARTICIPANT, "Pat", T0),
        "support": room.arrive(
            Identity("support", "s"), RoomRole.SUPPORT_PERSON, "Support person (sister)", T0
        ),
    }
    return room, people


def test_a_support_person_may_only_talk_listen_and_write_to_the_room() -> None:
    assert PERMISSIONS[RoomRole.SUPPORT_PERSON] == {RoomAction.CHAT_ROOM, RoomAction.MEDIA}
    room, people = _family_room()
    support = people["support"]
    for action in RoomAction:
        if action in (RoomAction.CHAT_ROOM, RoomAction.MEDIA):
            check_role(support, action)
            continue
        with pytest.raises(RoomError) as refused:
            check_role(support, action)
        assert refused.value.code == "forbidden"
    assert not support.is_staff


def test_a_support_person_waits_to_be_admitted_and_then_sees_only_patient_and_clinician() -> None:
    room, people = _family_room()
    support = people["support"]
    assert support.presence is Presence.WAITING
    assert room.visible_to(support) == [support]
    room.admit_all(people["host"], T0)
    seen = {m.name for m in room.visible_to(support)}
    assert seen == {"Clinician", "Pat", "Support person (sister)"}
    # The patient sees the support person (and the visible supervisor of a one-on-one).
    assert "Support person (sister)" in {m.name for m in room.visible_to(people["patient"])}
    assert room.support_ids() == {"support:s"}


def test_a_locked_family_room_turns_a_new_support_person_away() -> None:
    room = Room("r1", "Family session", "family", T0, locked=True)
    with pytest.raises(RoomError):
        room.arrive(Identity("support", "s"), RoomRole.SUPPORT_PERSON, "Support person", T0)


def test_a_family_session_requires_the_patients_release_never_the_support_persons_consent() -> None:
    assert required_kinds("family", None) == ("telehealth", "emergency_plan", "family_release")
    assert required_kinds("family", ["telehealth"]) == ("telehealth", "family_release")
    assert "family_release" not in required_kinds("individual", None)
    assert "family_release" not in required_kinds("group", None)
    for kind in ("group", "individual", "family"):
        assert not SUPPORT_PERSON_KINDS & set(required_kinds(kind, ["family_participant"]))
    assert "family_participant" not in PATIENT_KINDS and "family_release" in PATIENT_KINDS
