"""Idempotent consumers: each message id is applied at most once per consumer."""

from __future__ import annotations

import asyncpg

from schemas.events import CloudEvent


async def first_delivery(conn: asyncpg.Connection, event: CloudEvent, *, consumer: str) -> bool:
    """Record the event id for `consumer` in the caller's transaction; False when it was
    applied before (the transaction that applied it committed)."""
    return bool(
        await conn.fetchval(
            "INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            consumer,
            event.id,
        )
    )
