import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.phi import (
    DecryptionError,
    KeyFileError,
    Keyring,
    ensure_keyring,
    load_keyring,
    new_keyring,
)

KEYRING = new_keyring()


@given(st.text(max_size=500))
def test_sealed_values_open_to_the_same_text(text: str) -> None:
    sealed = KEYRING.seal(text, context="patients/x/home_address")
    assert KEYRING.open(sealed, context="patients/x/home_address") == text


def test_ciphertext_names_its_key_and_hides_the_value() -> None:
    sealed = KEYRING.seal("42 Canary Lane", context="c")
    assert sealed.startswith("v1:k1:")
    assert "Canary" not in sealed
    assert KEYRING.seal("42 Canary Lane", context="c") != sealed  # fresh nonce


def test_a_value_moved_to_another_record_does_not_open() -> None:
    sealed = KEYRING.seal("555-0101", context="patients/a/backup_phone")
    with pytest.raises(DecryptionError):
        KEYRING.open(sealed, context="patients/b/backup_phone")


def test_a_tampered_value_does_not_open() -> None:
    sealed = KEYRING.seal("secret", context="c")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        KEYRING.open(tampered, context="c")


def test_values_sealed_under_an_older_key_still_open_after_a_new_key_is_added() -> None:
    old = KEYRING.seal("text", context="c")
    rotated = Keyring(
        KEYRING.session_key, {**KEYRING.phi_keys, "k2": bytes(range(32))}, current="k2"
    )
    assert rotated.seal("text", context="c").startswith("v1:k2:")
    assert rotated.open(old, context="c") == "text"


def test_key_file_is_created_once_with_owner_only_access(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    first, created = ensure_keyring(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = ensure_keyring(path)
    assert not created_again
    assert again == first


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"phi_keys": {}}', '{"phi_keys": {"k1": "short"}, "phi_current": "k1"}'],
)
def test_a_malformed_key_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "secret.key"
    path.write_text(content)
    with pytest.raises(KeyFileError):
        load_keyring(path)


def test_key_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    keyring, _ = ensure_keyring(path)
    data = json.loads(path.read_text())
    assert data["phi_current"] == "k1"
    assert load_keyring(path) == keyring
