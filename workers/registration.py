"""The registration worker: turns RegisterRequested into a user, or into a rejection.
Each decision commits with its outbox rows."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import asyncpg

from schemas.events import (
    CloudEvent,
    RegisterRequested,
    RegistrationRejected,
    UserRegistered,
)
from service.outbox import add_event
from service.outcomes import announce
from service.sealing import UnsealError, unseal
from workers.activation import issue_activation_token
from workers.dedup import first_delivery
from workers.emails import request_email
from workers.passwords import Hasher, hash_password

log = logging.getLogger(__name__)
CONSUMER = "registration"
# A request still to decide; 'failed' ones come back when an operator replays the DLQ.
OPEN = ("pending", "failed")
UNIQUE_REASONS = {"users_tenant_email": "email_taken", "users_tenant_user_name": "username_taken"}


async def _reject(conn: asyncpg.Connection, data: RegisterRequested, reason: str) -> None:
    # The stand-in id lets a --duplicates silent answer look like a new user's.
    await conn.execute(
        "UPDATE registration_requests SET status = 'rejected', reason = $2, decided_at = now(), "
        "shadow_user_id = $3 WHERE id = $1",
        data.request_id,
        reason,
        uuid.uuid4(),
    )
    await add_event(
        conn,
        RegistrationRejected(request_id=data.request_id, tenant_id=data.tenant_id, reason=reason),
        subject=str(data.request_id),
    )
    await announce(conn, str(data.request_id))
    log.info("registration rejected", extra={"request_id": str(data.request_id), "reason": reason})


async def _notify_owner_if_silent(
    conn: asyncpg.Connection, data: RegisterRequested, reason: str
) -> None:
    """Under --duplicates silent the requester gets a new registration's answer, and the
    mailbox owner learns the rest by mail, in their own language: a taken address -> the
    "duplicate" notice to the account holder; a taken userName (address free) -> the
    "username_taken" notice to the address that tried to register."""
    silent = await conn.fetchval(
        "SELECT duplicates = 'silent' FROM tenants WHERE id = $1", data.tenant_id
    )
    if not silent:
        return
    owner = await conn.fetchrow(
        "SELECT email, user_name, locale FROM users "
        "WHERE tenant_id = $1 AND lower(email) = lower($2)",
        data.tenant_id,
        data.email,
    )
    if owner is not None:
        await request_email(
            conn,
            tenant_id=data.tenant_id,
            kind="duplicate",
            to=owner["email"],
            locale=owner["locale"],
            user_name=owner["user_name"],
        )
    elif reason == "username_taken":
        await request_email(
            conn,
            tenant_id=data.tenant_id,
            kind="username_taken",
            to=data.email,
            locale=data.locale,
            user_name=data.user_name,
        )


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


async def register_user(
    event: CloudEvent,
    data: RegisterRequested,
    *,
    pool: asyncpg.Pool,
    hasher: Hasher,
    private_key: str,
    token_key: bytes,
    token_ttl: dt.timedelta,
) -> None:
    """Create the user, or reject the request when the email or userName is taken."""
    status = await pool.fetchval(
        "SELECT status FROM registration_requests WHERE id = $1", data.request_id
    )
    if status not in OPEN:
        return  # decided already (redelivery or idempotent republish) or unknown
    try:
        password = unseal(data.sealed_password, private_key)
    except UnsealError:
        password = None
    password_hash = await hash_password(hasher, password) if password else None
    del password

    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        locked = await conn.fetchval(
            "SELECT status FROM registration_requests WHERE id = $1 FOR UPDATE", data.request_id
        )
        if locked not in OPEN:
            return
        if password_hash is None:
            await _reject(conn, data, "invalid_request")
            return
        try:
            async with conn.transaction():  # savepoint: a unique violation undoes only this
                user = await _insert_user(conn, data, password_hash)
        except asyncpg.UniqueViolationError as exc:
            reason = UNIQUE_REASONS.get(exc.constraint_name or "", "email_taken")
            await _reject(conn, data, reason)
            await _notify_owner_if_silent(conn, data, reason)
            return
        roles = await _grant_default_role(conn, user["id"], data.tenant_id)
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
        await issue_activation_token(
            conn,
            {
                **user,
                "tenant_id": data.tenant_id,
                "email": data.email,
                "user_name": data.user_name,
                "locale": data.locale,
            },
            activation_url=data.activation_url,
            token_key=token_key,
            ttl=token_ttl,
        )
        await announce(conn, str(data.request_id))
    log.info(
        "user registered", extra={"request_id": str(data.request_id), "user_id": str(user["id"])}
    )


async def record_failure(
    event: CloudEvent, data: RegisterRequested, *, pool: asyncpg.Pool, error: str
) -> None:
    """The command is being dead-lettered: say so on the request (its status resource
    answers 503 instead of 202 forever) and wake the gateway if it is waiting."""
    async with pool.acquire() as conn, conn.transaction():
        failed = await conn.fetchval(
            "UPDATE registration_requests SET status = 'failed', reason = 'processing_failed', "
            "decided_at = now() WHERE id = $1 AND status = 'pending' RETURNING true",
            data.request_id,
        )
        if failed:
            await announce(conn, str(data.request_id))
    log.error(
        "registration failed", extra={"request_id": str(data.request_id), "error": error[:300]}
    )
