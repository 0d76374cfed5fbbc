"""Commands the gateway publishes itself, with the outbox as their safety net.

The gateway records a request and its command in one transaction, the command as an
outbox row that the relay may take only after a grace period. Then it publishes the
command at once and answers after the broker's confirm. If the gateway dies, or the
broker or the database goes away between the commit and the confirm, the request is not
left pending forever: the relay publishes the recorded command when its grace is over.
Both copies carry the same CloudEvents id, so a worker applies it once.
"""

from __future__ import annotations

import datetime as dt
import logging

import asyncpg

from schemas.events import CloudEvent
from service.amqp import Publisher
from service.supervisor import is_transient

log = logging.getLogger(__name__)


async def record_command(
    conn: asyncpg.Connection, routing_key: str, event: CloudEvent, *, grace_s: float
) -> None:
    """Keep the command in the caller's transaction, for the relay to publish after
    `grace_s` unless `publish_recorded` has been confirmed by then."""
    await conn.execute(
        "INSERT INTO outbox (event_id, routing_key, body, available_at) "
        "VALUES ($1, $2, $3, now() + $4::interval) ON CONFLICT (event_id) DO NOTHING",
        event.id,
        routing_key,
        event.model_dump(mode="json", exclude_none=True),
        dt.timedelta(seconds=grace_s),
    )


async def forget_command(conn: asyncpg.Connection, event_id: object) -> None:
    """Undo `record_command` (the broker refused the command and the client gets a 503)."""
    await conn.execute("DELETE FROM outbox WHERE event_id = $1 AND published_at IS NULL", event_id)


async def publish_recorded(
    pool: asyncpg.Pool, publisher: Publisher, routing_key: str, event: CloudEvent
) -> None:
    """Publish now (raises BrokerUnavailable), then tell the relay it need not.

    The second step is best effort: once the broker has confirmed, the answer is a
    success even if the database is away; the relay then publishes a copy after the
    grace period, which the worker recognises by its id.
    """
    await publisher.publish(routing_key, event)
    try:
        # Sealed secrets are not kept longer than needed, even sealed.
        await pool.execute(
            "UPDATE outbox SET published_at = now(), body = body #- '{data,sealedPassword}' "
            "WHERE event_id = $1 AND published_at IS NULL",
            event.id,
        )
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning(
            "could not mark a confirmed command published; the relay will send a copy",
            extra={"event_id": str(event.id), "error": type(exc).__name__},
        )
