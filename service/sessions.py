"""Login sessions: the opaque access tokens users get from login (and activation).

A token is a random secret handed to the client once; only its SHA-256 hash is stored
(user_sessions). A sliding token's expiry moves `ttl` past each use; a fixed one expires
`ttl` after it was issued. Changing or resetting the password revokes every token of the
user; deleting the account deletes them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from schemas.ids import uuid7
from service import tokens

# Token strings start with this, so a leaked one is recognisable (secret scanners) and
# never mistaken for a tenant's bearer token.
PREFIX = "rgu_"


@dataclass(frozen=True)
class Grant:
    """What login answers (Baasic's token object)."""

    access_token: str
    expires_in: int
    sliding: bool

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }
        if self.sliding:
            body["sliding_window"] = self.expires_in
        return body


@dataclass(frozen=True)
class Session:
    id: uuid.UUID
    user_id: uuid.UUID
    sliding: bool
    ttl: dt.timedelta


async def open_session(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    ttl: dt.timedelta,
    sliding: bool,
) -> Grant:
    """A new access token for `user_id`."""
    token = PREFIX + tokens.new_secret()
    await conn.execute(
        "INSERT INTO user_sessions (id, tenant_id, user_id, token_hash, sliding, ttl, "
        "expires_at) VALUES ($1, $2, $3, $4, $5, $6, now() + $6)",
        uuid7(),
        tenant_id,
        user_id,
        tokens.hash_secret(token),
        sliding,
        ttl,
    )
    return Grant(access_token=token, expires_in=int(ttl.total_seconds()), sliding=sliding)


async def record_sign_in(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID) -> None:
    """Remember that the user signed in now, other than by a login (which records it with
    its own update): Blynk's lastLoggedAt and status read it (service.org_users)."""
    await conn.execute("UPDATE users SET last_login_at = now() WHERE id = $1", user_id)


# One statement: find a live token, slide it, and check its user may still use it (an
# administrator's lock blocks access at once).
USE_SESSION = """
UPDATE user_sessions s
   SET expires_at = CASE WHEN s.sliding THEN now() + s.ttl ELSE s.expires_at END
  FROM users u
 WHERE s.token_hash = $1 AND s.tenant_id = $2 AND s.revoked_at IS NULL
   AND s.expires_at > now() AND u.id = s.user_id AND NOT u.is_locked_out
RETURNING s.id, s.user_id, s.sliding, s.ttl
"""


async def use_session(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: uuid.UUID, token: str
) -> Session | None:
    """The live session of `token` in this tenant (its expiry slid), or None."""
    if not token.startswith(PREFIX):
        return None
    row = await conn.fetchrow(USE_SESSION, tokens.hash_secret(token), tenant_id)
    if row is None:
        return None
    return Session(id=row["id"], user_id=row["user_id"], sliding=row["sliding"], ttl=row["ttl"])


async def refresh_session(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, token: str) -> Grant | None:
    """A new token in place of a live `token` (which stops working), or None."""
    async with pool.acquire() as conn, conn.transaction():
        session = await use_session(conn, tenant_id=tenant_id, token=token)
        if session is None:
            return None
        await conn.execute("UPDATE user_sessions SET revoked_at = now() WHERE id = $1", session.id)
        return await open_session(
            conn,
            tenant_id=tenant_id,
            user_id=session.user_id,
            ttl=session.ttl,
            sliding=session.sliding,
        )


async def close_session(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, token: str) -> bool:
    """Revoke `token`; False when it was not a live token of this tenant."""
    if not token.startswith(PREFIX):
        return False
    revoked = await pool.fetchval(
        "UPDATE user_sessions SET revoked_at = now() WHERE token_hash = $1 AND tenant_id = $2 "
        "AND revoked_at IS NULL AND expires_at > now() RETURNING true",
        tokens.hash_secret(token),
        tenant_id,
    )
    return bool(revoked)


async def revoke_all(conn: asyncpg.Connection, user_id: uuid.UUID) -> None:
    """End every session of a user (password changed or reset)."""
    await conn.execute(
        "UPDATE user_sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
