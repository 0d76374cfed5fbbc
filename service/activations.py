"""Activating an account from the gateway: find the token, ask the worker, wait for it.

The worker consumes the token (service.outcomes announces its decision); this module only
checks what the gateway can answer at once (404 unknown or expired, 409 used) and tells a
caller whether it was *its* command that consumed the token.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from schemas.events import ActivationRequested, envelope
from service import tokens
from service.amqp import Publisher
from service.errors import NotFound, TokenAlreadyUsed
from service.outcomes import OutcomeWaiter

ACTIVATION_ROW_SQL = """
SELECT t.id, t.user_id, t.expires_at, t.used_at, t.revoked_at
  FROM activation_tokens t JOIN users u ON u.id = t.user_id
 WHERE t.token_hash = $1 AND u.tenant_id = $2
"""


async def activate(
    pool: asyncpg.Pool,
    publisher: Publisher,
    waiter: OutcomeWaiter,
    *,
    tenant_id: uuid.UUID,
    token: str,
    timeout: float,
) -> uuid.UUID | None:
    """The activated user's id, or None while the worker has not decided in time.
    Raises NotFound (unknown, revoked, expired), TokenAlreadyUsed, BrokerUnavailable."""
    row = await pool.fetchrow(ACTIVATION_ROW_SQL, tokens.hash_secret(token), tenant_id)
    if row is None or row["revoked_at"] is not None:
        raise NotFound("unknown activation token")
    if row["used_at"] is not None:
        raise TokenAlreadyUsed("this activation token was already used")
    if row["expires_at"] <= dt.datetime.now(dt.UTC):
        raise NotFound("the activation token has expired")

    command = envelope(ActivationRequested(token_id=row["id"], tenant_id=tenant_id))
    await publisher.publish("activation.requested", command)

    async def check() -> bool | None:
        used_by = await pool.fetchval(
            "SELECT used_by FROM activation_tokens WHERE id = $1", row["id"]
        )
        return None if used_by is None else used_by == command.id

    won = await waiter.wait_for(str(row["id"]), check, timeout=timeout)
    if won is None:
        return None
    if not won:  # a concurrent activation with the same token got there first
        raise TokenAlreadyUsed("this activation token was already used")
    return row["user_id"]
