"""Second factor for staff: TOTP (RFC 6238) with a QR enrolment, and recovery codes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import secrets

import pyotp
import segno

ISSUER = "IOP Sessions"
RECOVERY_CODES = 10
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i look-alikes


def new_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg_data_uri(uri: str) -> str:
    """The QR code as an SVG data URI, so no image leaves the server and CSP stays strict."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False)
    return "data:image/svg+xml;base64," + _b64(buffer.getvalue())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def accept_totp(secret: str, code: str, last_step: int | None, now: dt.datetime) -> int | None:
    """The time step a code matches (one step of clock drift allowed), or None.

    A step at or before `last_step` is refused so an observed code cannot be replayed.
    """
    digits = "".join(ch for ch in code if ch.isdigit())
    if len(digits) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // totp.interval
    for step in (current, current - 1, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * totp.interval), digits):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten single-use codes, shown once, like `k7mq-x3vd-p9wa` (about 59 bits each)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
    return codes


def normalise_recovery_code(code: str) -> str:
    """Lower-case, without spaces or dashes, as typed codes vary."""
    return "".join(ch for ch in code.lower() if ch.isalnum())


def recovery_code_hash(code: str) -> str:
    """SHA-256 of the normalised code (random, single-use codes need no slow hash)."""
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()
