"""Activation tokens: issuing one (and its email), consuming one, resending one."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import asyncpg

from schemas.events import ActivationRequested, ActivationResendRequested, CloudEvent, UserActivated
from service import tokens
from service.emails import request_email
from service.outbox import add_event
from service.outcomes import announce
from workers.dedup import first_delivery

log = logging.getLogger(__name__)
CONSUMER = "registration"


INSERT_ACTIVATION_ROW = (
    "INSERT INTO activation_tokens (id, user_id, token_hash, expires_at, activation_url) "
    "VALUES ($1, $2, $3, now() + $4::interval, $5)"
)


def token_row(
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    activation_url: str,
    *,
    token_key: bytes,
    ttl: dt.timedelta,
) -> tuple:
    """The values of INSERT_ACTIVATION_ROW's five parameters: the token is stored only as a hash
    of what both sides derive from the row id."""
    token_hash = tokens.hash_secret(tokens.derive_token(token_key, token_id))
    return token_id, user_id, token_hash, ttl, activation_url


async def issue_activation_token(
    conn: asyncpg.Connection,
    user: asyncpg.Record,
    *,
    activation_url: str,
    token_key: bytes,
    ttl: dt.timedelta,
) -> uuid.UUID:
    """A new single-use token (stored as a hash) and the email that carries its link.

    `user` needs id, tenant_id, email, user_name and locale. The token itself exists only
    in the mailer's memory: both sides derive it from the row id (tokens.derive_token).
    """
    token_id = uuid.uuid4()
    await conn.execute(
        INSERT_ACTIVATION_ROW,
        *token_row(token_id, user["id"], activation_url, token_key=token_key, ttl=ttl),
    )
    await request_email(
        conn,
        tenant_id=user["tenant_id"],
        kind="activation",
        to=user["email"],
        locale=user["locale"],
        user_name=user["user_name"],
        activation_url=activation_url,
        activation_token_id=token_id,
    )
    return token_id


async def activate_user(
    event: CloudEvent, data: ActivationRequested, *, pool: asyncpg.Pool
) -> None:
    """Consume the token once; approve its user and publish UserActivated."""
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        user_id = await conn.fetchval(
            """
            UPDATE activation_tokens SET used_at = now(), used_by = $2
             WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
            RETURNING user_id
            """,
            data.token_id,
            event.id,
        )
        if user_id is not None:
            activated_at = await conn.fetchval(
                "UPDATE users SET is_approved = true, updated_at = now() "
                "WHERE id = $1 AND tenant_id = $2 RETURNING updated_at",
                user_id,
                data.tenant_id,
            )
            await add_event(
                conn,
                UserActivated(user_id=user_id, tenant_id=data.tenant_id, activated_at=activated_at),
                subject=str(user_id),
            )
        await announce(conn, str(data.token_id))


async def _resent_recently(
    conn: asyncpg.Connection, user: asyncpg.Record, interval: dt.timedelta
) -> bool:
    """True when a resend (an activation email after the registration's own) went to this
    user's address within `interval`. Read from our own emails table, per kind of mail, so
    the throttle holds across gateway and worker processes and never holds back a
    different kind (a recovery mail, say). The caller holds the user's row lock, so
    concurrent resends for one address are decided one after the other."""
    recent = await conn.fetch(
        "SELECT created_at > now() - $4::interval AS recent FROM emails "
        "WHERE tenant_id = $1 AND kind = 'activation' AND lower(recipient) = lower($2) "
        "AND created_at >= $3 ORDER BY created_at DESC LIMIT 2",
        user["tenant_id"],
        user["email"],
        user["created_at"],
        interval,
    )
    # The oldest activation email is the registration's: only a later one is a resend.
    return len(recent) == 2 and recent[0]["recent"]


async def resend_activation(
    event: CloudEvent,
    data: ActivationResendRequested,
    *,
    pool: asyncpg.Pool,
    token_key: bytes,
    ttl: dt.timedelta,
    interval: dt.timedelta = dt.timedelta(seconds=60),
) -> None:
    """A fresh link for a user still awaiting activation; older tokens stop working.

    Silently does nothing for unknown or already-approved addresses: the caller got 204
    either way, so the endpoint cannot be used to probe who is registered. Throttled
    (REGISTRAR_RESEND_INTERVAL_S): once a resend has mailed the address, further resends
    within `interval` send nothing; the first resend after the registration always mails.
    """
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        user = await conn.fetchrow(
            "SELECT id, tenant_id, email, user_name, locale, created_at FROM users "
            "WHERE tenant_id = $1 AND lower(email) = lower($2) AND NOT is_approved FOR UPDATE",
            data.tenant_id,
            data.email,
        )
        if user is None:
            return
        if await _resent_recently(conn, user, interval):
            log.info("activation resend throttled", extra={"user_id": str(user["id"])})
            return
        activation_url = await conn.fetchval(
            "SELECT activation_url FROM activation_tokens WHERE user_id = $1 "
            "AND activation_url IS NOT NULL ORDER BY created_at DESC LIMIT 1",
            user["id"],
        )
        if activation_url is None:
            log.warning(
                "no activation URL on record; cannot resend", extra={"user_id": str(user["id"])}
            )
            return
        await conn.execute(
            "UPDATE activation_tokens SET revoked_at = now() "
            "WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            user["id"],
        )
        await issue_activation_token(
            conn, user, activation_url=activation_url, token_key=token_key, ttl=ttl
        )
    log.info("activation resent", extra={"user_id": str(user["id"])})
