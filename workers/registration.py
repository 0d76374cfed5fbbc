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
from schemas.ids import uuid7
from service import outcomes
from service.emails import EmailContent, email_row, request_email
from service.outbox import add_event, outbox_row
from service.outcomes import announce
from service.passwords import Hasher, hash_password
from service.sealing import UnsealError, unseal
from workers import admin_registration
from workers.activation import token_row

log = logging.getLogger(__name__)
CONSUMER = "registration"
# A request still to decide; 'failed' ones come back when an operator replays the DLQ.
OPEN = ("pending", "failed")


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


# The processed-message record and the request's row lock, in one round trip. `first` is
# NULL when this message was applied before (by a transaction that committed). `admin`:
# what an administrator decided, for a user created in the back office (else NULL).
FIRST_AND_LOCK = """
WITH first AS (
    INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING RETURNING true AS first
)
SELECT (SELECT first FROM first) AS first,
       (SELECT status FROM registration_requests WHERE id = $3 FOR UPDATE) AS status,
       (SELECT admin FROM registration_requests WHERE id = $3) AS admin
"""

# The user and its roles (by lower-case name: `user` for a self-registration, what the
# administrator chose for a user created in the back office). No row when the email or
# userName is taken (any unique index of users: ON CONFLICT DO NOTHING waits for a
# concurrent insert of the same key to commit or roll back, as the unique violation it
# replaces did); then TAKEN says which.
INSERT_USER = """
WITH u AS (
    INSERT INTO users (id, tenant_id, user_name, email, password_hash, locale, source, name,
                       is_approved)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT DO NOTHING
    RETURNING id, created_at
), r AS (
    INSERT INTO user_roles (user_id, role_id)
    SELECT u.id, roles.id FROM u, roles
     WHERE roles.tenant_id = $2 AND lower(roles.name) = ANY($10::text[])
    RETURNING role_id
)
SELECT u.id, u.created_at,
       ARRAY(SELECT ro.name FROM r JOIN roles ro ON ro.id = r.role_id ORDER BY ro.name) AS roles
  FROM u
"""
# What a self-registration is, in the terms of a user created in the back office.
SELF = {"source": "self", "name": "", "isApproved": False, "roles": ["user"]}

TAKEN = """
SELECT EXISTS (SELECT FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)) AS email,
       EXISTS (SELECT FROM users WHERE tenant_id = $1 AND lower(user_name) = lower($3))
           AS user_name
"""

# Everything else a registration decides, in one statement: the request is registered, the
# activation token and its email row are written, `user.registered` and `email.requested`
# go to the outbox (in that order), and the gateway is woken on commit.
DECIDE = """
WITH decided AS (
    UPDATE registration_requests SET status = 'registered', user_id = $1, decided_at = now()
     WHERE id = $2
), token AS (
    INSERT INTO activation_tokens (id, user_id, token_hash, expires_at, activation_url)
    VALUES ($3, $4, $5, now() + $6::interval, $7)
), email AS (
    INSERT INTO emails (id, tenant_id, kind, recipient, locale, params)
    VALUES ($8, $9, $10, $11, $12, $13)
), events AS (
    INSERT INTO outbox (event_id, routing_key, body) VALUES ($14, $15, $16), ($17, $18, $19)
)
SELECT pg_notify($20, $21)
"""


async def _taken(conn: asyncpg.Connection, data: RegisterRequested) -> str:
    """Why the user could not be inserted; the email wins when both are taken, as it did
    when the first unique index to fail (users_tenant_email) named the reason."""
    row = await conn.fetchrow(TAKEN, data.tenant_id, data.email, data.user_name)
    if row["user_name"] and not row["email"]:
        return "username_taken"
    return "email_taken"


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
    """Create the user, or reject the request when the email or userName is taken.

    Round trips: the status check before hashing, then BEGIN, FIRST_AND_LOCK, INSERT_USER,
    DECIDE, COMMIT (a rejection replaces DECIDE with TAKEN and the rejection's statements).
    """
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
        locked = await conn.fetchrow(FIRST_AND_LOCK, CONSUMER, event.id, data.request_id)
        if not locked["first"] or locked["status"] not in OPEN:
            return
        if password_hash is None:
            await _reject(conn, data, "invalid_request")
            return
        admin = locked["admin"]
        chosen = SELF if admin is None else admin | {"source": "admin"}
        user = await conn.fetchrow(
            INSERT_USER,
            uuid7(),
            data.tenant_id,
            data.user_name,
            data.email,
            password_hash,
            data.locale,
            chosen["source"],
            chosen["name"],
            chosen["isApproved"],
            chosen["roles"],
        )
        if user is None:
            reason = await _taken(conn, data)
            await _reject(conn, data, reason)
            if admin is None:  # an administrator is told, with a 409
                await _notify_owner_if_silent(conn, data, reason)
            return
        if admin is None:
            await conn.execute(DECIDE, *_decision(data, user, token_key=token_key, ttl=token_ttl))
        else:
            await admin_registration.decide(
                conn, data, admin, user, token_key=token_key, token_ttl=token_ttl
            )
    log.info(
        "user registered", extra={"request_id": str(data.request_id), "user_id": str(user["id"])}
    )


def _decision(
    data: RegisterRequested, user: asyncpg.Record, *, token_key: bytes, ttl: dt.timedelta
) -> tuple:
    """DECIDE's parameters."""
    token_id = uuid7()
    registered = UserRegistered(
        user_id=user["id"],
        tenant_id=data.tenant_id,
        email=data.email,
        user_name=data.user_name,
        name="",
        locale=data.locale,
        is_approved=False,
        roles=list(user["roles"]),
        source="self",
        registered_at=user["created_at"],
        request_id=data.request_id,
    )
    email = EmailContent(
        email_id=uuid7(),
        tenant_id=data.tenant_id,
        kind="activation",
        to=data.email,
        locale=data.locale,
        user_name=data.user_name,
        activation_url=data.activation_url,
        activation_token_id=token_id,
    )
    return (
        user["id"],
        data.request_id,
        *token_row(token_id, user["id"], data.activation_url, token_key=token_key, ttl=ttl),
        *email_row(email),
        *outbox_row(registered, subject=str(user["id"])),
        *outbox_row(email.command()),
        outcomes.CHANNEL,
        str(data.request_id),
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
