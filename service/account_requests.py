"""Authorizations the gateway hands the worker, in our own database.

A command that changes an account (a password reset or change, a deletion) is acted on
only when the gateway wrote its id here after checking the caller (their token, their
password, or a tenant token's scope). The worker claims the row in the transaction that
makes the change: a command forged by someone able to publish on the broker names no row
and changes nothing; a replayed one finds its row already claimed.
"""

from __future__ import annotations

import uuid
from typing import Literal

import asyncpg

Kind = Literal["reset", "change", "delete"]


async def authorize(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    command_id: uuid.UUID,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    kind: Kind,
) -> None:
    await conn.execute(
        "INSERT INTO account_requests (id, tenant_id, user_id, kind) VALUES ($1, $2, $3, $4)",
        command_id,
        tenant_id,
        user_id,
        kind,
    )


async def withdraw(conn: asyncpg.Connection | asyncpg.Pool, command_id: uuid.UUID) -> None:
    """The broker refused the command: the authorization goes with it."""
    await conn.execute("DELETE FROM account_requests WHERE id = $1", command_id)


async def claim(
    conn: asyncpg.Connection,
    *,
    command_id: uuid.UUID,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID | None,
    kind: Kind,
) -> uuid.UUID | None:
    """Take the authorization for this command (in the caller's transaction): the user it
    was given for, or None when there is none (forged or already applied). `user_id`
    None accepts the row's user (a reset names a token, not a user)."""
    return await conn.fetchval(
        "DELETE FROM account_requests WHERE id = $1 AND tenant_id = $2 AND kind = $3 "
        "AND ($4::uuid IS NULL OR user_id = $4) RETURNING user_id",
        command_id,
        tenant_id,
        kind,
        user_id,
    )
