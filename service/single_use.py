"""Consuming a single-use token from the gateway: find it, ask the worker, wait for it.

Activation and password-reset tokens work alike: the gateway answers what it can at once
(404 unknown, revoked or expired; 409 used), publishes a command naming the token's row,
and waits for the worker, which consumes the token in its own transaction and records the
command that did so (`used_by`): that tells this caller 200 from a concurrent caller's 409.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from schemas.events import Command, envelope, routing_key_of
from service import account_requests, tokens
from service.amqp import BrokerUnavailable, Publisher
from service.errors import NotFound, TokenAlreadyUsed
from service.outcomes import OutcomeWaiter


@dataclass(frozen=True)
class TokenKind:
    name: str  # for error messages: "activation token"
    find_sql: str  # by token hash ($1) and tenant ($2)
    used_by_sql: str  # which command consumed the token with id $1


ACTIVATION = TokenKind(
    name="activation token",
    find_sql="""
SELECT t.id, t.user_id, t.expires_at, t.used_at, t.revoked_at
  FROM activation_tokens t JOIN users u ON u.id = t.user_id
 WHERE t.token_hash = $1 AND u.tenant_id = $2
""",
    used_by_sql="SELECT used_by FROM activation_tokens WHERE id = $1",
)
RECOVERY = TokenKind(
    name="password recovery token",
    find_sql="""
SELECT t.id, t.user_id, t.expires_at, t.used_at, t.revoked_at
  FROM password_recovery_tokens t JOIN users u ON u.id = t.user_id
 WHERE t.token_hash = $1 AND u.tenant_id = $2
""",
    used_by_sql="SELECT used_by FROM password_recovery_tokens WHERE id = $1",
)


async def consume(
    pool: asyncpg.Pool,
    publisher: Publisher,
    waiter: OutcomeWaiter,
    kind: TokenKind,
    *,
    tenant_id: uuid.UUID,
    token: str,
    command_for: Callable[[uuid.UUID], Command],
    timeout: float,
    authorize: account_requests.Kind | None = None,
) -> uuid.UUID | None:
    """The token's user id once this caller's command consumed it, or None while the
    worker has not decided in time. `command_for(token_id)` builds the command's data.
    Raises NotFound (unknown, revoked, expired), TokenAlreadyUsed, BrokerUnavailable."""
    row = await pool.fetchrow(kind.find_sql, tokens.hash_secret(token), tenant_id)
    if row is None or row["revoked_at"] is not None:
        raise NotFound(f"unknown {kind.name}")
    if row["used_at"] is not None:
        raise TokenAlreadyUsed(f"this {kind.name} was already used")
    if row["expires_at"] <= dt.datetime.now(dt.UTC):
        raise NotFound(f"the {kind.name} has expired")

    data = command_for(row["id"])
    command = envelope(data)
    if authorize is not None:
        await account_requests.authorize(
            pool, command_id=command.id, tenant_id=tenant_id, user_id=row["user_id"], kind=authorize
        )
    try:
        await publisher.publish(routing_key_of(data), command)
    except BrokerUnavailable:
        if authorize is not None:
            await account_requests.withdraw(pool, command.id)
        raise

    async def check() -> bool | None:
        used_by = await pool.fetchval(kind.used_by_sql, row["id"])
        return None if used_by is None else used_by == command.id

    won = await waiter.wait_for(str(row["id"]), check, timeout=timeout)
    if won is None:
        return None
    if not won:  # a concurrent request with the same token got there first
        raise TokenAlreadyUsed(f"this {kind.name} was already used")
    return row["user_id"]
