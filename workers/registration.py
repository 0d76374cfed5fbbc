"""The registration worker: turns RegisterRequested into a user (or a rejection) and
ActivationRequested into an approved user. Each decision commits with its outbox rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

import asyncpg
from argon2 import PasswordHasher

from schemas.events import (
    ActivationRequested,
    CloudEvent,
    EmailRequested,
    RegisterRequested,
    RegistrationRejected,
    UserActivated,
    UserRegistered,
)
from service import tokens
from service.outbox import add_event
from service.outcomes import announce
from service.sealing import UnsealError, unseal
from workers.dedup import first_delivery

log = logging.getLogger(__name__)
CONSUMER = "registration"
UNIQUE_REASONS = {"users_tenant_email": "email_taken", "users_tenant_user_name": "username_taken"}


async def _reject(conn: asyncpg.Connection, data: RegisterRequested, reason: str) -> None:
    await conn.execute(
        "UPDATE registration_requests SET status = 'rejected', reason = $2, decided_at = now() "
        "WHERE id = $1",
        data.request_id,
        reason,
    )
    await add_event(
        conn,
        RegistrationRejected(request_id=data.request_id, tenant_id=data.tenant_id, reason=reason),
        subject=str(data.request_id),
    )
    await announce(conn, str(data.request_id))
    log.info("registration rejected", extra={"request_id": str(data.request_id), "reason": reason})


async def _insert_user(
    conn: asyncpg.Connection, data: RegisterRequested, password_hash: str
) -> asyncpg.Record:
    return await conn.fetchrow(
        """
        INSERT INTO users (id, tenant_id, user_name, email, password_hash, locale, source)
        VALUES ($1, $2, $3, $4, $5, $6, 'self')
        RETURNING id, created_at
        """,
        uuid.uuid4(),
        data.tenant_id,
        data.user_name,
        data.email,
        password_hash,
        data.locale,
    )


async def _grant_default_role(
    conn: asyncpg.Connection, user_id: uuid.UUID, tenant_id: uuid.UUID
) -> list[str]:
    rows = await conn.fetch(
        "INSERT INTO user_roles (user_id, role_id) "
        "SELECT $1, id FROM roles WHERE tenant_id = $2 AND lower(name) = 'user' "
        "RETURNING role_id",
        user_id,
        tenant_id,
    )
    return ["User"] if rows else []


async def _issue_activation_token(
    conn: asyncpg.Connection, user_id: uuid.UUID, *, token_key: bytes, ttl: dt.timedelta
) -> uuid.UUID:
    token_id = uuid.uuid4()
    token = tokens.derive_token(token_key, token_id)
    await conn.execute(
        "INSERT INTO activation_tokens (id, user_id, token_hash, expires_at) "
        "VALUES ($1, $2, $3, now() + $4::interval)",
        token_id,
        user_id,
        tokens.hash_secret(token),
        ttl,
    )
    return token_id


async def register_user(
    event: CloudEvent,
    data: RegisterRequested,
    *,
    pool: asyncpg.Pool,
    hasher: PasswordHasher,
    private_key: str,
    token_key: bytes,
    token_ttl: dt.timedelta,
) -> None:
    """Create the user, or reject the request when the email or userName is taken."""
    status = await pool.fetchval(
        "SELECT status FROM registration_requests WHERE id = $1", data.request_id
    )
    if status != "pending":
        return  # decided already (redelivery or idempotent republish) or unknown
    try:
        password = unseal(data.sealed_password, private_key)
    except UnsealError:
        password = None
    # argon2id is deliberately slow: run it off the event loop.
    password_hash = await asyncio.to_thread(hasher.hash, password) if password else None
    del password

    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        locked = await conn.fetchval(
            "SELECT status FROM registration_requests WHERE id = $1 FOR UPDATE", data.request_id
        )
        if locked != "pending":
            return
        if password_hash is None:
            await _reject(conn, data, "invalid_request")
            return
        try:
            async with conn.transaction():  # savepoint: a unique violation undoes only this
                user = await _insert_user(conn, data, password_hash)
        except asyncpg.UniqueViolationError as exc:
            await _reject(conn, data, UNIQUE_REASONS.get(exc.constraint_name or "", "email_taken"))
            return
        roles = await _grant_default_role(conn, user["id"], data.tenant_id)
        token_id = await _issue_activation_token(
            conn, user["id"], token_key=token_key, ttl=token_ttl
        )
        await conn.execute(
            "UPDATE registration_requests SET status = 'registered', user_id = $2, "
            "decided_at = now() WHERE id = $1",
            data.request_id,
            user["id"],
        )
        await add_event(
            conn,
            UserRegistered(
                user_id=user["id"],
                tenant_id=data.tenant_id,
                email=data.email,
                user_name=data.user_name,
                name="",
                locale=data.locale,
                is_approved=False,
                roles=roles,
                source="self",
                registered_at=user["created_at"],
                request_id=data.request_id,
            ),
            subject=str(user["id"]),
        )
        email_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO emails (id, tenant_id, kind, recipient) VALUES ($1, $2, 'activation', $3)",
            email_id,
            data.tenant_id,
            data.email,
        )
        await add_event(
            conn,
            EmailRequested(
                email_id=email_id,
                tenant_id=data.tenant_id,
                kind="activation",
                to=data.email,
                locale=data.locale,
                user_name=data.user_name,
                activation_url=data.activation_url,
                activation_token_id=token_id,
            ),
        )
        await announce(conn, str(data.request_id))
    log.info(
        "user registered", extra={"request_id": str(data.request_id), "user_id": str(user["id"])}
    )


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
