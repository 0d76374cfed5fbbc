"""Activating an account from the gateway: find the token, ask the worker, wait for it
(service.single_use); the worker consumes the token and announces its decision."""

from __future__ import annotations

import uuid

import asyncpg

from schemas.events import ActivationRequested
from service import single_use
from service.amqp import Publisher
from service.outcomes import OutcomeWaiter


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
    return await single_use.consume(
        pool,
        publisher,
        waiter,
        single_use.ACTIVATION,
        tenant_id=tenant_id,
        token=token,
        command_for=lambda token_id: ActivationRequested(token_id=token_id, tenant_id=tenant_id),
        timeout=timeout,
    )
