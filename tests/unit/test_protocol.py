"""Parsing client frames: every type validated, everything else refused with a code."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms import protocol as p


def test_each_declared_type_parses_to_its_schema() -> None:
    assert isinstance(p.parse('{"type": "hello", "protocol": 1}'), p.Hello)
    assert p.parse('{"type": "hello", "protocol": 1, "last_seq": 7}').last_seq == 7
    chat = p.parse(json.dumps({"type": "chat", "to": "room", "text": "hi"}))
    assert isinstance(chat, p.Chat) and chat.text == "hi"
    mute = p.parse(json.dumps({"type": "mute", "member_id": "patient:abc-1", "audio": True}))
    assert isinstance(mute, p.Mute) and mute.audio is True and mute.video is None
    assert isinstance(p.parse('{"type": "admit_all"}'), p.AdmitAll)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"no": "type"}', "unknown_type"),
        ('{"type": "launch_rockets"}', "unknown_type"),
        ('{"type": "hello"}', "invalid"),
        ('{"type": "hello", "protocol": "1"}', "invalid"),
        ('{"type": "admit_all", "extra": 1}', "invalid"),
        ('{"type": "raise_hand", "raised": "yes"}', "invalid"),
        ('{"type": "react", "reaction": "applause"}', "invalid"),
        ('{"type": "admit", "member_id": "<script>"}', "invalid"),
        (json.dumps({"type": "chat", "to": "room", "text": "x" * 1001}), "invalid"),
        (json.dumps({"type": "chat", "to": "room", "text": ""}), "invalid"),
        ("x" * (64 * 1024 + 1), "too_large"),
    ],
)
def test_bad_frames_are_refused_with_a_code(frame: str, code: str) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse(frame)
    assert caught.value.code == code


def test_error_reasons_do_not_echo_the_input() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse(json.dumps({"type": "raise_hand", "raised": "Canary Secret"}))
    assert "Canary" not in caught.value.reason


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_frames_never_raise_anything_but_protocol_errors(frame: str | bytes) -> None:
    try:
        p.parse(frame)
    except p.ProtocolError:
        pass


@given(
    st.dictionaries(
        st.sampled_from(["type", "to", "text", "member_id", "raised", "protocol", "audio"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
        max_size=5,
    )
)
def test_arbitrary_objects_either_parse_or_are_refused(data: dict[str, object]) -> None:
    try:
        p.parse(json.dumps(data))
    except p.ProtocolError:
        pass
