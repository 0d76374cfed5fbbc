"""Writing events to the transactional outbox (the relay worker publishes them)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from schemas.events import EventData, envelope, routing_key_of

INSERT = "INSERT INTO outbox (event_id, routing_key, body) VALUES ($1, $2, $3)"


def outbox_row(data: EventData, *, subject: str | None = None) -> tuple[uuid.UUID, str, Any]:
    """(event_id, routing_key, body) of the outbox row that carries `data`, for callers
    that write it as part of a larger statement (one round trip instead of several)."""
    event = envelope(data, subject=subject)
    return event.id, routing_key_of(data), event.model_dump(mode="json", exclude_none=True)


async def add_event(
    conn: asyncpg.Connection, data: EventData, *, subject: str | None = None
) -> uuid.UUID:
    """Record an event in the caller's transaction; it is published only if that commits."""
    row = outbox_row(data, subject=subject)
    await conn.execute(INSERT, *row)
    return row[0]
