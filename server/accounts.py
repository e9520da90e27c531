"""Staff accounts in storage: passwords, second factor, recovery codes, invitations, throttling."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import mfa
from server.phi import Keyring
from server.storage.tables import auth_failures, recovery_codes, staff, staff_invites

HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the e-mail is unknown, so both paths cost the same time.
_DUMMY_HASH = HASHER.hash("not-a-real-password")
# Stored for invited accounts: no password verifies against it.
UNUSABLE_PASSWORD = "!unset"
INVITE_DAYS = 3


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy token; only this is stored."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def new_token() -> str:
    """An opaque URL-safe token of 192 random bits."""
    return secrets.token_urlsafe(24)


async def hash_password(password: str) -> str:
    """argon2id hash, computed off the event loop."""
    return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password with the same work whether or not the account can sign in."""
    usable = password_hash is not None and password_hash != UNUSABLE_PASSWORD

    def check() -> bool:
        try:
            HASHER.verify(password_hash if usable else _DUMMY_HASH, password)  # type: ignore[arg-type]
        except (VerificationError, InvalidHashError):
            return False
        return usable

    return await asyncio.to_thread(check)


async def staff_by_email(conn: AsyncConnection, email: str) -> Any:
    """The staff row for an e-mail, or None."""
    return (await conn.execute(sa.select(staff).where(staff.c.email == email.lower()))).first()


async def staff_by_id(conn: AsyncConnection, staff_id: str) -> Any:
    """The staff row for an id, or None."""
    return (await conn.execute(sa.select(staff).where(staff.c.id == staff_id))).first()


# Throttling ------------------------------------------------------------------------------


def account_key(email: str) -> str:
    """Failures are counted per account under a hash, so unknown e-mails are not stored."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


async def throttled(
    conn: AsyncConnection,
    email: str,
    address: str,
    now: dt.datetime,
    window: dt.timedelta,
    max_account: int,
    max_address: int,
) -> bool:
    """True when recent failures for this account or address reached their limit."""
    since = now - window
    per_account = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(auth_failures)
        .where(auth_failures.c.account_hash == account_key(email), auth_failures.c.at >= since)
    )
    per_address = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(auth_failures)
        .where(auth_failures.c.address == address, auth_failures.c.at >= since)
    )
    return (per_account or 0) >= max_account or (per_address or 0) >= max_address


async def record_failure(conn: AsyncConnection, email: str, address: str, now: dt.datetime) -> None:
    """Count one failed attempt against the account and the address."""
    await conn.execute(
        auth_failures.insert().values(account_hash=account_key(email), address=address, at=now)
    )


async def forget_failures(conn: AsyncConnection, email: str, older_than: dt.datetime) -> None:
    """Drop failures of an account after it signs in, and everyone's old ones."""
    await conn.execute(
        auth_failures.delete().where(
            sa.or_(
                auth_failures.c.account_hash == account_key(email), auth_failures.c.at < older_than
            )
        )
    )


# Second factor ---------------------------------------------------------------------------


def totp_context(staff_id: str) -> str:
    """The encryption context of a staff member's TOTP secret."""
    return f"staff/{staff_id}/totp_secret"


def totp_secret(keyring: Keyring, row: Any) -> str | None:
    """The staff member's TOTP secret, decrypted."""
    return keyring.open_optional(row.totp_secret_enc, context=totp_context(row.id))


async def enrol_totp(
    conn: AsyncConnection, keyring: Keyring, staff_id: str, secret: str, step: int, now: dt.datetime
) -> list[str]:
    """Store a confirmed TOTP secret and return fresh recovery codes (shown once)."""
    await conn.execute(
        staff.update()
        .where(staff.c.id == staff_id)
        .values(
            totp_secret_enc=keyring.seal(secret, context=totp_context(staff_id)),
            totp_enrolled_at=now,
            totp_last_step=step,
        )
    )
    await conn.execute(recovery_codes.delete().where(recovery_codes.c.staff_id == staff_id))
    codes = mfa.new_recovery_codes()
    await conn.execute(
        recovery_codes.insert(),
        [
            {
                "id": secrets.token_hex(18),
                "staff_id": staff_id,
                "code_hash": mfa.recovery_code_hash(code),
                "created_at": now,
            }
            for code in codes
        ],
    )
    return codes


async def accept_second_factor(
    conn: AsyncConnection, keyring: Keyring, row: Any, code: str, now: dt.datetime
) -> str | None:
    """Check a TOTP or recovery code; return "totp" or "recovery" when it is accepted."""
    secret = totp_secret(keyring, row)
    if secret is None:
        return None
    step = mfa.accept_totp(secret, code, row.totp_last_step, now)
    if step is not None:
        # Conditional update: two requests racing with one code cannot both succeed.
        result = await conn.execute(
            staff.update()
            .where(
                staff.c.id == row.id,
                sa.or_(staff.c.totp_last_step.is_(None), staff.c.totp_last_step < step),
            )
            .values(totp_last_step=step)
        )
        return "totp" if result.rowcount == 1 else None
    result = await conn.execute(
        recovery_codes.update()
        .where(
            recovery_codes.c.staff_id == row.id,
            recovery_codes.c.code_hash == mfa.recovery_code_hash(code),
            recovery_codes.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return "recovery" if result.rowcount == 1 else None


async def reset_totp(conn: AsyncConnection, staff_id: str) -> None:
    """Remove the second factor so the account enrols again at next sign-in."""
    await conn.execute(
        staff.update()
        .where(staff.c.id == staff_id)
        .values(totp_secret_enc=None, totp_enrolled_at=None, totp_last_step=None)
    )
    await conn.execute(recovery_codes.delete().where(recovery_codes.c.staff_id == staff_id))


async def unused_recovery_codes(conn: AsyncConnection, staff_id: str) -> int:
    """How many recovery codes the account has left."""
    return int(
        await conn.scalar(
            sa.select(sa.func.count())
            .select_from(recovery_codes)
            .where(recovery_codes.c.staff_id == staff_id, recovery_codes.c.used_at.is_(None))
        )
        or 0
    )


# Invitations -----------------------------------------------------------------------------


async def create_invite(conn: AsyncConnection, staff_id: str, now: dt.datetime) -> str:
    """A one-time link token for an invited account to set its password."""
    token = new_token()
    await conn.execute(
        staff_invites.insert().values(
            id=secrets.token_hex(18),
            staff_id=staff_id,
            token_hash=token_hash(token),
            expires_at=now + dt.timedelta(days=INVITE_DAYS),
            created_at=now,
        )
    )
    return token


async def open_invite(conn: AsyncConnection, token: str, now: dt.datetime) -> Any:
    """The unused, unexpired invitation for a token, or None."""
    return (
        await conn.execute(
            sa.select(staff_invites).where(
                staff_invites.c.token_hash == token_hash(token),
                staff_invites.c.used_at.is_(None),
                staff_invites.c.expires_at > now,
            )
        )
    ).first()


async def accept_invite(
    conn: AsyncConnection, invite_id: str, staff_id: str, password_hash: str, now: dt.datetime
) -> bool:
    """Set the password and use up the invitation; False if it was used meanwhile."""
    used = await conn.execute(
        staff_invites.update()
        .where(staff_invites.c.id == invite_id, staff_invites.c.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:
        return False
    await conn.execute(
        staff.update().where(staff.c.id == staff_id).values(password_hash=password_hash)
    )
    return True
