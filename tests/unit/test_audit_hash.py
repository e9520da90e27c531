"""The canonical row encoding and the keyed row MAC (server/rowmac.py)."""

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from server.audit import CHAIN
from server.rowmac import encode, sign_with

KEY = b"k" * 32
FIELDS = {
    "prev_hash": "0" * 64,
    "seq": 1,
    "at": dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC),
    "actor_type": "staff",
    "actor_id": "s1",
    "actor_role": "clinician",
    "action": "patient.phi_read",
    "target_type": "patient",
    "target_id": "p1",
    "outcome": "ok",
    "request_id": "r1",
    "detail": {"b": 1, "a": [1, 2]},
}
scalars = st.none() | st.text(max_size=8) | st.integers() | st.booleans()


def test_the_mac_does_not_depend_on_key_order_or_time_zone_spelling() -> None:
    reordered = dict(reversed(list(FIELDS.items())))
    reordered["detail"] = {"a": [1, 2], "b": 1}
    reordered["at"] = FIELDS["at"].astimezone(dt.timezone(dt.timedelta(hours=-8)))
    assert sign_with(CHAIN, "m1", KEY, 1, reordered) == sign_with(CHAIN, "m1", KEY, 1, FIELDS)


def test_null_is_distinct_from_empty() -> None:
    assert encode(None) != encode("")
    assert encode("") != encode(0)


@given(st.lists(scalars, max_size=4), st.lists(scalars, max_size=4))
def test_the_encoding_of_a_sequence_of_values_is_injective(a: list, b: list) -> None:
    def tagged(values: list) -> list[tuple[type, object]]:
        return [(type(v), v) for v in values]

    if tagged(a) != tagged(b) and [encode(v) for v in a] != [encode(v) for v in b]:
        assert b"".join(encode(v) for v in a) != b"".join(encode(v) for v in b)


@given(
    field=st.sampled_from([k for k in FIELDS if k not in ("at", "seq", "detail")]),
    value=st.text(min_size=1, max_size=20),
)
def test_changing_any_field_the_key_or_its_id_changes_the_mac(field: str, value: str) -> None:
    original = sign_with(CHAIN, "m1", KEY, 1, FIELDS)["hash"]
    if FIELDS[field] != value:
        assert sign_with(CHAIN, "m1", KEY, 1, {**FIELDS, field: value})["hash"] != original
    assert sign_with(CHAIN, "m1", b"j" * 32, 1, FIELDS)["hash"] != original
    assert sign_with(CHAIN, "m2", KEY, 1, FIELDS)["hash"] != original
