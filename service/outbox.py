"""Writing events to the transactional outbox (the relay worker publishes them)."""

from __future__ import annotations

import uuid

import asyncpg

from schemas.events import EventData, envelope, routing_key_of


async def add_event(
    conn: asyncpg.Connection, data: EventData, *, subject: str | None = None
) -> uuid.UUID:
    """Record an event in the caller's transaction; it is published only if that commits."""
    event = envelope(data, subject=subject)
    await conn.execute(
        "INSERT INTO outbox (event_id, routing_key, body) VALUES ($1, $2, $3)",
        event.id,
        routing_key_of(data),
        event.model_dump(mode="json", exclude_none=True),
    )
    return event.id
