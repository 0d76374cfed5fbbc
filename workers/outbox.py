"""The outbox relay: publishes committed outbox rows to `{prefix}.events`.

Several relays may run at once: each batch is claimed with FOR UPDATE SKIP LOCKED and
marked published in the same transaction, after the broker has confirmed every message.
A crash between confirm and commit republishes the batch: delivery is at least once and
consumers deduplicate on the CloudEvents id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from schemas.events import CloudEvent
from service.amqp import BrokerUnavailable, Publisher

log = logging.getLogger(__name__)
CHANNEL = "registrar_outbox"
BATCH = 100
IDLE_POLL_S = 5.0
ERROR_PAUSE_S = 2.0
# Outbox rows that are commands to our own workers: their queue must exist.
COMMANDS = frozenset({"email.requested"})


async def publish_batch(pool: asyncpg.Pool, publisher: Publisher, *, limit: int = BATCH) -> int:
    """Publish up to `limit` pending rows; returns how many were published."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, routing_key, body FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        if not rows:
            return 0
        # Confirms are pipelined: all messages go out, then we wait for every ack.
        await asyncio.gather(
            *(
                publisher.publish(
                    row["routing_key"],
                    CloudEvent.model_validate(row["body"]),
                    mandatory=row["routing_key"] in COMMANDS,
                )
                for row in rows
            )
        )
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
            [row["id"] for row in rows],
        )
    return len(rows)


async def relay(
    pool: asyncpg.Pool, publisher: Publisher, *, database_url: str, stop: asyncio.Event
) -> None:
    """Publish until `stop` is set, woken by NOTIFY on insert and by a slow poll."""
    wake = asyncio.Event()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener(CHANNEL, lambda *_: wake.set())
    log.info("outbox relay started")
    try:
        while not stop.is_set():
            wake.clear()
            try:
                while await publish_batch(pool, publisher) == BATCH and not stop.is_set():
                    pass
            except (BrokerUnavailable, asyncpg.PostgresError, OSError) as exc:
                log.warning("outbox relay pass failed", extra={"error": str(exc)[:500]})
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            stop_wait = asyncio.create_task(stop.wait())
            wake_wait = asyncio.create_task(wake.wait())
            await asyncio.wait(
                {stop_wait, wake_wait}, timeout=IDLE_POLL_S, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (stop_wait, wake_wait):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await listener.close()
        log.info("outbox relay stopped")
