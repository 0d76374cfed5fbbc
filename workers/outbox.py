"""The outbox relay: publishes committed outbox rows, commands (such as the workers'
`email.requested`) to `{prefix}.commands` and events to `{prefix}.events` (the publisher
picks the exchange from the routing key).

Delivery is at least once. Several relays may run at once: each batch is claimed with
FOR UPDATE SKIP LOCKED, and a row is marked published in the same transaction, after the
broker has confirmed it. A crash between confirm and commit republishes the row, and a
command the gateway published itself may be published again by the relay once its grace
period is over (its confirm was never recorded): consumers deduplicate on the CloudEvents
id.

A row that cannot be published (its body is not a CloudEvent, or the broker returned it
as unroutable) is tried again later, at most `max_attempts` times; then it is
parked with its last error (metric registrar_outbox_parked_total, an error log line) and
left for an operator. Nothing waits behind such a row. When the broker as a whole is away,
no row is blamed: `publish_batch` raises and the supervisor restarts the relay after a
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import asyncpg
from aiormq.exceptions import PublishError
from pydantic import ValidationError

from schemas.events import CloudEvent
from service import metrics, prune
from service.amqp import Publisher
from service.supervisor import sleep_unless

log = logging.getLogger(__name__)
CHANNEL = "registrar_outbox"  # NOTIFYed on insert (migration 0001); service.listen hears it
BATCH = 100
IDLE_POLL_S = 5.0
# A row that failed waits this long before its next attempt, doubled with each further
# failure (capped): its attempts span minutes, not one burst of batches. A queue re-created
# during an upgrade or full for a while should not get its commands parked at once.
RETRY_DELAY_S = 5.0
RETRY_DELAY_MAX_S = 300.0
ERROR_CHARS = 1000


def _blames_row(exc: BaseException) -> bool:
    """True when the failure is the row's, not the broker's: its body is not a CloudEvent,
    or the broker returned this very message as unroutable (no queue of ours is bound).
    A nack (a full queue, reject-publish) is backpressure, not the row's fault: the relay
    backs off and tries again without counting it, so a long backlog parks nothing."""
    return isinstance(exc, ValidationError) or isinstance(exc.__cause__, PublishError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


async def _publish_row(publisher: Publisher, row: asyncpg.Record) -> None:
    event = CloudEvent.model_validate(row["body"])  # ValidationError: a poison row
    # A command is published mandatory: one no queue of ours receives fails (and is
    # retried, then parked) instead of being confirmed and dropped.
    await publisher.publish(row["routing_key"], event)


def _connection(db: asyncpg.Pool | asyncpg.Connection):
    """A pool's connection for one batch, or the relay's own (kept between batches)."""
    if isinstance(db, asyncpg.Pool):
        return db.acquire()
    return contextlib.nullcontext(db)


async def publish_batch(
    db: asyncpg.Pool | asyncpg.Connection,
    publisher: Publisher,
    *,
    limit: int = BATCH,
    max_attempts: int = 5,
    retry_delay_s: float = RETRY_DELAY_S,
) -> int:
    """Publish up to `limit` due rows; returns how many rows it took (published or failed).
    `db` is a pool (a connection is acquired for the batch) or a connection of the
    caller's (the relay keeps one: no acquire and reset round trip per batch).

    Confirms are pipelined (every message goes out, then every confirm is awaited) with an
    outcome per row: confirmed rows are marked published; a failed row gets attempts + 1
    and its error, is due again after a backoff, and is parked at `max_attempts`. Failures
    that are the broker's (channel or connection lost, no confirm in time) are counted
    against no row: the rows confirmed are still marked, then BrokerUnavailable (or
    whatever else went wrong) is raised for the caller to back off.
    """
    broker_failure: BaseException | None = None
    async with _connection(db) as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, event_id, routing_key, body FROM outbox "
            "WHERE published_at IS NULL AND parked_at IS NULL AND available_at <= now() "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        if not rows:
            return 0
        outcomes = await asyncio.gather(
            *(_publish_row(publisher, row) for row in rows), return_exceptions=True
        )
        results = list(zip(rows, outcomes, strict=True))
        published = [row["id"] for row, outcome in results if outcome is None]
        failed = [(row, exc) for row, exc in results if isinstance(exc, BaseException)]
        # With the channel gone, no failure of this batch says anything about its row.
        broker_away = not publisher.is_connected
        blamed = [(row, exc) for row, exc in failed if not broker_away and _blames_row(exc)]
        if len(blamed) < len(failed):
            broker_failure = next(
                exc for _row, exc in failed if broker_away or not _blames_row(exc)
            )
        if published:
            # A command's sealed secrets need not be kept once it is out (as the gateway does).
            await conn.execute(
                "UPDATE outbox SET published_at = now(), body = body #- '{data,sealedPassword}' "
                "WHERE id = ANY($1::bigint[])",
                published,
            )
        if blamed:
            await _record_failures(conn, blamed, max_attempts, retry_delay_s)
    if broker_failure is not None:
        log.warning(
            "outbox batch not confirmed by the broker",
            extra={
                "rows": len(rows),
                "published": len(published),
                "error": _describe(broker_failure),
            },
        )
        raise broker_failure
    return len(rows)


async def _record_failures(
    conn: asyncpg.Connection,
    failed: list[tuple[asyncpg.Record, BaseException]],
    max_attempts: int,
    retry_delay_s: float,
) -> None:
    """attempts + 1, last_error, next attempt after a backoff; parked at `max_attempts`."""
    errors = [_describe(exc) for _row, exc in failed]
    updated = await conn.fetch(
        """
        UPDATE outbox AS o
        SET attempts = o.attempts + 1,
            last_error = f.error,
            parked_at = CASE WHEN o.attempts + 1 >= $3 THEN now() END,
            available_at = now() + make_interval(secs => least($5, $4 * 2 ^ o.attempts))
        FROM unnest($1::bigint[], $2::text[]) AS f(id, error)
        WHERE o.id = f.id
        RETURNING o.event_id, o.routing_key, o.attempts, o.parked_at IS NOT NULL AS parked,
                  f.error
        """,
        [row["id"] for row, _exc in failed],
        errors,
        max(max_attempts, 1),
        retry_delay_s,
        RETRY_DELAY_MAX_S,
    )
    for row in updated:
        details: dict[str, Any] = {
            "event_id": str(row["event_id"]),
            "routing_key": row["routing_key"],
            "attempts": row["attempts"],
            "error": row["error"],
        }
        if row["parked"]:
            metrics.OUTBOX_PARKED.labels(row["routing_key"]).inc()
            log.error("outbox row parked: given up publishing it", extra=details)
        else:
            log.warning("outbox row not published; will retry", extra=details)


async def relay(
    pool: asyncpg.Pool,
    publisher: Publisher,
    *,
    wake: asyncio.Event,
    stop: asyncio.Event,
    max_attempts: int,
    retry_delay_s: float = RETRY_DELAY_S,
) -> None:
    """Publish until `stop` is set; a supervised task (see service.supervisor).

    Woken by `wake` (set by the composition root's LISTEN on CHANNEL, which fires on every
    insert of a row due at once) and by a slow poll, which also finds rows whose
    `available_at` has come. Each pass publishes batches until one comes back smaller than
    BATCH. Transient errors
    (broker or database away) are not handled here: they propagate, and the supervisor
    logs them and restarts the relay after a backoff. Delivery is at least once (see the
    module docstring): consumers deduplicate on the CloudEvents id.
    """
    log.info("outbox relay started")
    try:
        # One connection for every pass (a pass or two per registration): acquiring and
        # resetting a pool connection each time cost a round trip and a statement. A
        # broken connection ends the relay like any database error; the supervisor
        # restarts it with a fresh one.
        async with pool.acquire() as conn:
            while not stop.is_set():
                wake.clear()  # a NOTIFY during the pass below makes for another pass
                while not stop.is_set():
                    taken = await publish_batch(
                        conn, publisher, max_attempts=max_attempts, retry_delay_s=retry_delay_s
                    )
                    if taken < BATCH:
                        break
                await wait_for_either(wake, stop, timeout=IDLE_POLL_S)
    finally:
        log.info("outbox relay stopped")


async def wait_for_either(first: asyncio.Event, second: asyncio.Event, *, timeout: float) -> None:
    waits = {asyncio.create_task(first.wait()), asyncio.create_task(second.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def prune_periodically(
    pool: asyncpg.Pool,
    retention: prune.Retention,
    *,
    stop: asyncio.Event,
    interval_s: float,
    batch: int,
) -> None:
    """Prune (service.prune) now and then every `interval_s` until `stop`; a supervised
    task of the outbox worker (`outbox-prune` in /readyz). Each run also refreshes the
    table-size gauges. Several outbox workers may prune at once: their batches skip each
    other's rows. The pause is jittered (±20 %) so that workers started together drift
    apart. A database error propagates: the supervisor restarts the task after a backoff.
    """
    while not stop.is_set():
        await prune.prune_cycle(pool, retention, batch=batch, stopping=stop.is_set)
        await sleep_unless(stop, interval_s * random.uniform(0.8, 1.2))  # noqa: S311
