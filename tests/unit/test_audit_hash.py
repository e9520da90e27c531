import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from server.audit import GENESIS, row_hash

FIELDS = {
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


def test_the_hash_does_not_depend_on_key_order_or_time_zone_spelling() -> None:
    reordered = dict(reversed(list(FIELDS.items())))
    reordered["detail"] = {"a": [1, 2], "b": 1}
    reordered["at"] = FIELDS["at"].astimezone(dt.timezone(dt.timedelta(hours=-8)))
    assert row_hash(GENESIS, reordered) == row_hash(GENESIS, FIELDS)


@given(
    field=st.sampled_from([k for k in FIELDS if k not in ("at", "seq", "detail")]),
    value=st.text(min_size=1, max_size=20),
)
def test_changing_any_field_or_the_previous_hash_changes_the_hash(field: str, value: str) -> None:
    original = row_hash(GENESIS, FIELDS)
    if FIELDS[field] != value:
        assert row_hash(GENESIS, {**FIELDS, field: value}) != original
    assert row_hash("1" * 64, FIELDS) != original
