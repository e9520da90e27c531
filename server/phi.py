"""PHI field encryption at rest: AES-256-GCM with a key id in every stored value."""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "v1"
NONCE_BYTES = 12


class KeyFileError(Exception):
    """The secret key file is missing a part, unreadable or malformed."""


class DecryptionError(Exception):
    """A stored PHI value cannot be opened: wrong key, tampered or moved."""


@dataclass(slots=True)
class Keyring:
    """The server's secrets: the cookie key and the PHI keys by id.

    A keyring loaded from a file follows that file: `python -m server keys rotate` adds a
    key and re-encrypts rows while servers run, so a server that meets an unknown key id
    re-reads the file, and one whose file changed writes with the new current key.
    """

    session_key: bytes
    phi_keys: dict[str, bytes]
    current: str
    path: Path | None = field(default=None, compare=False)
    mtime_ns: int = field(default=0, compare=False)
    # Ed25519 keys that sign consent records, by id (private keys, raw 32 bytes).
    signing_keys: dict[str, bytes] = field(default_factory=dict)
    signing_current: str = ""
    # HMAC-SHA256 keys that key the record chains (server/rowmac.py), by id. Old keys stay
    # so rows written under them keep verifying; history is never re-MACed by a rotation.
    mac_keys: dict[str, bytes] = field(default_factory=dict)
    mac_current: str = ""

    def _reload(self) -> None:
        if self.path is None:
            return
        fresh = load_keyring(self.path)
        self.phi_keys = fresh.phi_keys
        self.current = fresh.current
        self.signing_keys = fresh.signing_keys
        self.signing_current = fresh.signing_current
        self.mac_keys = fresh.mac_keys
        self.mac_current = fresh.mac_current
        self.mtime_ns = fresh.mtime_ns

    def _follow_file(self) -> None:
        if self.path is None:
            return
        try:
            changed = self.path.stat().st_mtime_ns != self.mtime_ns
        except OSError:
            return
        if changed:
            self._reload()

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt a PHI value; `context` binds it to its record and field."""
        self._follow_file()
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.phi_keys[self.current]).encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        payload = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{FORMAT}:{self.current}:{payload}"

    def open(self, stored: str, *, context: str) -> str:
        """Decrypt a value written by `seal` with the same context."""
        try:
            fmt, key_id, payload = stored.split(":", 2)
        except ValueError:
            raise DecryptionError("not an encrypted value") from None
        if fmt != FORMAT:
            raise DecryptionError(f"unknown format {fmt!r}")
        if key_id not in self.phi_keys:
            self._reload()
        key = self.phi_keys.get(key_id)
        if key is None:
            raise DecryptionError(f"unknown key id {key_id!r}")
        try:
            raw = base64.urlsafe_b64decode(payload.encode("ascii"))
        except ValueError:
            raise DecryptionError("not an encrypted value") from None
        try:
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise DecryptionError("value does not authenticate") from None
        return plain.decode("utf-8")

    def sign(self, data: bytes) -> tuple[str, str]:
        """Sign with the current signing key: (key id, base64 signature)."""
        self._follow_file()
        key = Ed25519PrivateKey.from_private_bytes(self.signing_keys[self.signing_current])
        return self.signing_current, base64.b64encode(key.sign(data)).decode("ascii")

    def public_keys(self) -> dict[str, str]:
        """Every signing key's public half, base64 raw bytes, by id (for offline checks)."""
        self._follow_file()
        return {
            kid: base64.b64encode(
                Ed25519PrivateKey.from_private_bytes(raw)
                .public_key()
                .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            ).decode("ascii")
            for kid, raw in self.signing_keys.items()
        }

    def current_mac_key(self) -> tuple[str, bytes]:
        """The key new chain rows are MACed with: (key id, key)."""
        self._follow_file()
        return self.mac_current, self.mac_keys[self.mac_current]

    def mac_key(self, key_id: str) -> bytes | None:
        """A chain MAC key by id (re-reading the file for an id not yet seen), or None."""
        if key_id not in self.mac_keys:
            self._reload()
        return self.mac_keys.get(key_id)

    def seal_optional(self, plaintext: str | None, *, context: str) -> str | None:
        """`seal`, passing None through."""
        return None if plaintext is None else self.seal(plaintext, context=context)

    def open_optional(self, stored: str | None, *, context: str) -> str | None:
        """`open`, passing None through."""
        return None if stored is None else self.open(stored, context=context)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyFileError(f"{what} is not a base64 string")
    try:
        value = base64.b64decode(text, validate=True)
    except ValueError:
        raise KeyFileError(f"{what} is not valid base64") from None
    if len(value) != 32:
        raise KeyFileError(f"{what} must be 32 bytes")
    return value


def _new_signing_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def new_keyring() -> Keyring:
    """A fresh keyring with one PHI key and one signing key."""
    return Keyring(
        session_key=secrets.token_bytes(32),
        phi_keys={"k1": AESGCM.generate_key(bit_length=256)},
        current="k1",
        signing_keys={"s1": _new_signing_key()},
        signing_current="s1",
        mac_keys={"m1": secrets.token_bytes(32)},
        mac_current="m1",
    )


def verify_signature(public_key_b64: str, data: bytes, signature_b64: str) -> bool:
    """Check an Ed25519 signature against a base64 raw public key."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        public.verify(base64.b64decode(signature_b64), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_keyring(path: Path) -> Keyring:
    """Read the key file written by `save_keyring`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError:
        raise KeyFileError(f"{path} is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("phi_keys"), dict):
        raise KeyFileError(f"{path} lacks phi_keys")
    keys = {str(kid): _unb64(value, f"phi key {kid}") for kid, value in data["phi_keys"].items()}
    current = data.get("phi_current")
    if current not in keys:
        raise KeyFileError(f"{path}: phi_current names no key")
    signing = {
        str(kid): _unb64(value, f"signing key {kid}")
        for kid, value in (data.get("signing_keys") or {}).items()
    }
    signing_current = str(data.get("signing_current") or "")
    if signing and signing_current not in signing:
        raise KeyFileError(f"{path}: signing_current names no key")
    macs = {
        str(kid): _unb64(value, f"mac key {kid}")
        for kid, value in (data.get("mac_keys") or {}).items()
    }
    mac_current = str(data.get("mac_current") or "")
    if macs and mac_current not in macs:
        raise KeyFileError(f"{path}: mac_current names no key")
    return Keyring(
        session_key=_unb64(data.get("session_key"), "session_key"),
        phi_keys=keys,
        current=str(current),
        path=path,
        mtime_ns=path.stat().st_mtime_ns,
        signing_keys=signing,
        signing_current=signing_current,
        mac_keys=macs,
        mac_current=mac_current,
    )


def save_keyring(path: Path, keyring: Keyring) -> None:
    """Write the key file atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(
        {
            "session_key": _b64(keyring.session_key),
            "phi_keys": {kid: _b64(key) for kid, key in keyring.phi_keys.items()},
            "phi_current": keyring.current,
            "signing_keys": {kid: _b64(key) for kid, key in keyring.signing_keys.items()},
            "signing_current": keyring.signing_current,
            "mac_keys": {kid: _b64(key) for kid, key in keyring.mac_keys.items()},
            "mac_current": keyring.mac_current,
        },
        indent=2,
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def ensure_keyring(path: Path) -> tuple[Keyring, bool]:
    """Load the key file, creating it on first start; say whether it was created."""
    if path.exists():
        keyring = load_keyring(path)
        if not keyring.signing_keys or not keyring.mac_keys:
            # Key files from before consent signing or keyed chains gain their first key,
            # before migrations run: the one that re-MACs the chains needs it.
            if not keyring.signing_keys:
                keyring.signing_keys = {"s1": _new_signing_key()}
                keyring.signing_current = "s1"
            if not keyring.mac_keys:
                keyring.mac_keys = {"m1": secrets.token_bytes(32)}
                keyring.mac_current = "m1"
            save_keyring(path, keyring)
            keyring = load_keyring(path)
        return keyring, False
    save_keyring(path, new_keyring())
    return load_keyring(path), True


def add_key(path: Path) -> str:
    """Add a new PHI key to the file and make it current; return its id."""
    keyring = load_keyring(path)
    number = 1 + max(int(kid[1:]) for kid in keyring.phi_keys if kid[1:].isdigit())
    key_id = f"k{number}"
    keyring.phi_keys[key_id] = AESGCM.generate_key(bit_length=256)
    keyring.current = key_id
    save_keyring(path, keyring)
    return key_id


def add_mac_key(path: Path) -> str:
    """Add a new chain MAC key and make it current; rows under old keys still verify."""
    keyring = load_keyring(path)
    numbers = [int(kid[1:]) for kid in keyring.mac_keys if kid[1:].isdigit()]
    key_id = f"m{1 + max(numbers, default=0)}"
    keyring.mac_keys[key_id] = secrets.token_bytes(32)
    keyring.mac_current = key_id
    save_keyring(path, keyring)
    return key_id


def add_signing_key(path: Path) -> str:
    """Add a new consent signing key and make it current; old keys still verify."""
    keyring = load_keyring(path)
    numbers = [int(kid[1:]) for kid in keyring.signing_keys if kid[1:].isdigit()]
    key_id = f"s{1 + max(numbers, default=0)}"
    keyring.signing_keys[key_id] = _new_signing_key()
    keyring.signing_current = key_id
    save_keyring(path, keyring)
    return key_id
