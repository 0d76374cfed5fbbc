"""Checking a user's password: at login, and where a signed-in user confirms theirs.

Every way a login can fail (unknown name, wrong password, not yet activated, locked) ends
in the same LoginFailed answer after the same work: the password is always verified with
argon2 (against a dummy hash when there is no such user), so neither the body nor the
time tells who has an account. Wrong passwords count per user; `max_failures` of them
within `window` lock the account for `lockout` (user.locked is published and the owner
mailed). A hash made with older argon2 parameters is replaced at the next good login.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from schemas.events import UserLocked
from service.emails import request_email
from service.errors import Unauthorized
from service.outbox import add_event
from service.passwords import PasswordChecker
from service.sessions import Grant, open_session
from service.settings import Settings

log = logging.getLogger(__name__)

# userName first: a userName may look like someone else's email address.
FIND_USER = """
SELECT id, tenant_id, user_name, email, locale, password_hash, is_approved, is_locked_out,
       COALESCE(locked_until > now(), false) AS locked_for_now
  FROM users
 WHERE tenant_id = $1 AND (lower(user_name) = lower($2) OR lower(email) = lower($2))
 ORDER BY lower(user_name) = lower($2) DESC
 LIMIT 1
"""

# Count a failure in the current window (a failure after the window opens a new one).
COUNT_FAILURE = """
UPDATE users
   SET failed_logins = CASE WHEN first_failed_login_at > now() - $2::interval
                            THEN failed_logins + 1 ELSE 1 END,
       first_failed_login_at = CASE WHEN first_failed_login_at > now() - $2::interval
                                    THEN first_failed_login_at ELSE now() END
 WHERE id = $1
RETURNING failed_logins, COALESCE(locked_until > now(), false) AS locked_for_now
"""

LOCK = """
UPDATE users SET locked_until = now() + $2::interval, failed_logins = 0,
                 first_failed_login_at = NULL
 WHERE id = $1
RETURNING now() AS at, locked_until
"""


class LoginFailed(Unauthorized):
    slug, title = "login-failed", "The credentials were not accepted"
    # One detail for every cause: which one it was is exactly what must not leak.
    DETAIL = "wrong user name or password, or the account cannot sign in"

    def __init__(self) -> None:
        super().__init__(self.DETAIL, error="invalid_grant")


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int
    window: dt.timedelta
    lockout: dt.timedelta
    token_ttl: dt.timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        return cls(
            max_failures=settings.login_max_failures,
            window=dt.timedelta(seconds=settings.login_failure_window_s),
            lockout=dt.timedelta(seconds=settings.lockout_s),
            token_ttl=dt.timedelta(seconds=settings.token_ttl_s),
        )


async def find_user(pool: asyncpg.Pool, tenant_id: uuid.UUID, login: str) -> asyncpg.Record | None:
    """The user whose userName (or else email) is `login`, case-insensitively."""
    return await pool.fetchrow(FIND_USER, tenant_id, login)


async def record_failure(
    pool: asyncpg.Pool, user: asyncpg.Record, policy: LoginPolicy
) -> dt.datetime | None:
    """Count a wrong password for `user`; lock the account when that was one too many.
    Returns when the lock-out ends if this failure started one."""
    async with pool.acquire() as conn, conn.transaction():
        counted = await conn.fetchrow(COUNT_FAILURE, user["id"], policy.window)
        if counted is None or counted["locked_for_now"]:
            return None
        if counted["failed_logins"] < policy.max_failures:
            return None
        locked = await conn.fetchrow(LOCK, user["id"], policy.lockout)
        await add_event(
            conn,
            UserLocked(
                user_id=user["id"],
                tenant_id=user["tenant_id"],
                at=locked["at"],
                locked_until=locked["locked_until"],
                reason="failed_logins",
            ),
            subject=str(user["id"]),
        )
        await request_email(
            conn,
            tenant_id=user["tenant_id"],
            kind="locked_out",
            to=user["email"],
            locale=user["locale"],
            user_name=user["user_name"],
            locked_until=locked["locked_until"],
        )
    log.warning("account locked after failed logins", extra={"user_id": str(user["id"])})
    return locked["locked_until"]


async def _upgrade_hash(
    pool: asyncpg.Pool, checker: PasswordChecker, user: asyncpg.Record, password: str
) -> None:
    """Re-hash with the current argon2 parameters; only if the hash is still the one we
    verified (a password change in between wins)."""
    new_hash = await checker.hash(password)
    await pool.execute(
        "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
        user["id"],
        user["password_hash"],
        new_hash,
    )


async def check_password(
    pool: asyncpg.Pool,
    checker: PasswordChecker,
    policy: LoginPolicy,
    user: asyncpg.Record | None,
    password: str,
) -> bool:
    """True when `password` is `user`'s. A wrong one counts towards the lock-out; no user
    costs the same argon2 work as a wrong password."""
    matches, needs_rehash = await checker.verify(
        None if user is None else user["password_hash"], password
    )
    if user is None:
        return False
    if not matches:
        await record_failure(pool, user, policy)
        return False
    if needs_rehash:
        await _upgrade_hash(pool, checker, user, password)
    return True


async def login(
    pool: asyncpg.Pool,
    checker: PasswordChecker,
    policy: LoginPolicy,
    *,
    tenant_id: uuid.UUID,
    login_name: str,
    password: str,
    sliding: bool,
) -> Grant:
    """A new access token for the owner of these credentials, or LoginFailed."""
    checker.ensure_room()
    user = await find_user(pool, tenant_id, login_name)
    if not await check_password(pool, checker, policy, user, password):
        raise LoginFailed()
    if not user["is_approved"] or user["is_locked_out"] or user["locked_for_now"]:
        raise LoginFailed()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE users SET failed_logins = 0, first_failed_login_at = NULL, "
            "last_login_at = now() WHERE id = $1",
            user["id"],
        )
        return await open_session(
            conn, tenant_id=tenant_id, user_id=user["id"], ttl=policy.token_ttl, sliding=sliding
        )
