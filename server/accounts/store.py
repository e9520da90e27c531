"""Staff accounts in storage: passwords, second factor, recovery codes, invitations, throttling."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.accounts import mfa
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


async def end_sessions(conn: AsyncConnection, staff_id: str) -> None:
    """Make every session of the account, on every device, stop working at once.

    Cookies live in the browser, so forgetting a session means refusing the generation
    it was issued in: a copied cookie is worth nothing after sign-out or a reset.
    """
    await conn.execute(
        staff.update()
        .where(staff.c.id == staff_id)
        .values(session_generation=staff.c.session_generation + 1)
    )


async def staff_by_id(conn: AsyncConnection, staff_id: str) -> Any:
    """The staff row for an id, or None."""
    return (await conn.execute(sa.select(staff).where(staff.c.id == staff_id))).first()


# Throttling ------------------------------------------------------------------------------


def account_key(email: str) -> str:
    """Failures are counted per account under a hash, so unknown e-mails are not stored."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


FIRST_DELAY_S = 5


@dataclass(frozen=True, slots=True)
class Attempt:
    """One sign-in attempt, counted as a failure until it is known to have succeeded."""

    failure_id: int | None  # the failure row reserved for it; None when it was refused
    retry_after_s: int  # when refused: seconds until this account or address may try again

    @property
    def refused(self) -> bool:
        """True when the attempt must not be checked at all."""
        return self.failure_id is None


@dataclass(frozen=True, slots=True)
class Limits:
    """How failed sign-ins are limited."""

    window: dt.timedelta
    free_failures: int  # per account, before each attempt has to wait
    max_delay_s: int  # the longest wait an account's failures can impose
    max_address: int  # per client address, then refused until the window passes


def account_delay_s(failures: int, limits: Limits) -> int:
    """How long an account waits after `failures` recent failures: 5 s, doubling, capped.

    A delay instead of a lock: anyone who knows an e-mail address can fail on purpose,
    and must not be able to keep its owner out for the whole window.
    """
    if failures < limits.free_failures:
        return 0
    return int(min(limits.max_delay_s, FIRST_DELAY_S * 2 ** (failures - limits.free_failures)))


async def begin_attempt(
    engine: AsyncEngine, email: str, address: str, now: dt.datetime, limits: Limits
) -> Attempt:
    """Count a failure for the account and address first, then see whether it may proceed.

    The failure row is committed before the password (or code) is checked, so a burst of
    parallel requests sees its own earlier members and only the first few reach the
    expensive hash. A refused attempt's row is removed: refusals are not failures, so
    hammering a delayed account does not lengthen its delay.
    """
    async with engine.begin() as conn:
        failure_id = (
            await conn.execute(
                auth_failures.insert().values(
                    account_hash=account_key(email), address=address, at=now
                )
            )
        ).inserted_primary_key[0]
    since = now - limits.window
    earlier = sa.and_(auth_failures.c.id < failure_id, auth_failures.c.at >= since)
    async with engine.begin() as conn:
        account = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.max(auth_failures.c.at)).where(
                    earlier, auth_failures.c.account_hash == account_key(email)
                )
            )
        ).one()
        per_address = await conn.scalar(
            sa.select(sa.func.count()).where(earlier, auth_failures.c.address == address)
        )
        wait = 0.0
        delay = account_delay_s(int(account[0] or 0), limits)
        if delay and account[1] is not None:
            wait = (account[1] + dt.timedelta(seconds=delay) - now).total_seconds()
        if (per_address or 0) >= limits.max_address:
            wait = max(wait, limits.window.total_seconds())
        if wait <= 0:
            return Attempt(int(failure_id), 0)
        await conn.execute(auth_failures.delete().where(auth_failures.c.id == failure_id))
    return Attempt(None, max(1, math.ceil(wait)))


async def attempt_succeeded(conn: AsyncConnection, attempt: Attempt) -> None:
    """The attempt was right after all: it is not a failure."""
    if attempt.failure_id is not None:
        await conn.execute(auth_failures.delete().where(auth_failures.c.id == attempt.failure_id))


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
        .values(**_totp_values(keyring, staff_id, secret, step, now))
    )
    return await _replace_recovery_codes(conn, staff_id, now)


async def enrol_first_totp(
    conn: AsyncConnection, keyring: Keyring, staff_id: str, secret: str, step: int, now: dt.datetime
) -> list[str] | None:
    """Like `enrol_totp`, but only for an account without a second factor; None otherwise.

    Enrolling at sign-in follows a password alone, so it must never replace a second
    factor the account already has: that would turn the password into the only factor.
    """
    result = await conn.execute(
        staff.update()
        .where(staff.c.id == staff_id, staff.c.totp_enrolled_at.is_(None))
        .values(**_totp_values(keyring, staff_id, secret, step, now))
    )
    if result.rowcount != 1:
        return None
    return await _replace_recovery_codes(conn, staff_id, now)


def _totp_values(
    keyring: Keyring, staff_id: str, secret: str, step: int, now: dt.datetime
) -> dict[str, Any]:
    return {
        "totp_secret_enc": keyring.seal(secret, context=totp_context(staff_id)),
        "totp_enrolled_at": now,
        "totp_last_step": step,
    }


async def _replace_recovery_codes(
    conn: AsyncConnection, staff_id: str, now: dt.datetime
) -> list[str]:
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
    """Remove the second factor so the account enrols again at next sign-in.

    Sessions signed in with the old factor end too: it may be in someone else's hands.
    """
    await conn.execute(
        staff.update()
        .where(staff.c.id == staff_id)
        .values(totp_secret_enc=None, totp_enrolled_at=None, totp_last_step=None)
    )
    await end_sessions(conn, staff_id)
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
    await end_sessions(conn, staff_id)
    return True
