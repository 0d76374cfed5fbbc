"""Outbox relay throughput: confirms pipelined per batch (what workers/outbox.py does)
against waiting for each confirm before the next publish. Real PostgreSQL and RabbitMQ on
localhost, a throwaway database and AMQP prefix; rounds interleaved, ratios from one run.

    .venv/bin/python bench/outbox_publish.py [--events 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

import asyncpg
from _report import print_ratios

from schemas.events import CloudEvent, UserActivated
from service import amqp, db
from service.outbox import add_event
from workers import outbox

POSTGRES = os.environ.get("REGISTRAR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
AMQP = os.environ.get("REGISTRAR_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def fill(pool: asyncpg.Pool, count: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for _ in range(count):
            await add_event(
                conn,
                UserActivated(
                    user_id=uuid.uuid4(), tenant_id=uuid.uuid4(), activated_at=time.time()
                ),
            )


async def sequential_batch(pool: asyncpg.Pool, publisher: amqp.Publisher) -> int:
    """The naive relay: one publish, wait for its confirm, then the next."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, routing_key, body FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            outbox.BATCH,
        )
        for row in rows:
            await publisher.publish(row["routing_key"], CloudEvent.model_validate(row["body"]))
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
            [row["id"] for row in rows],
        )
    return len(rows)


async def drain(pool, publisher, batch_fn) -> None:
    while await batch_fn(pool, publisher):
        pass


async def main(count: int, rounds: int) -> None:
    name = f"registrar_bench_{uuid.uuid4().hex[:8]}"
    url = f"{POSTGRES}/{name}"
    await db.migrate(url)
    pool = await db.create_pool(url)
    connection = await amqp.connect(AMQP)
    names = amqp.Names(f"bench_{uuid.uuid4().hex[:8]}")
    publisher = await amqp.open_publisher(connection, names, max_length=1_000_000, timeout=30)
    channel = await connection.channel()
    sink = await channel.declare_queue(exclusive=True, auto_delete=True)
    await sink.bind(names.events, routing_key="#")  # so every event is routed somewhere
    variants = {
        "confirm each message in turn": sequential_batch,
        "confirms pipelined per batch": outbox.publish_batch,
    }
    rates: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for round_no in range(1, rounds + 1):
            for label, batch_fn in variants.items():
                await fill(pool, count)
                started = time.perf_counter()
                await drain(pool, publisher, batch_fn)
                rates[label].append(count / (time.perf_counter() - started))
                await sink.purge()
            print(f"round {round_no}/{rounds} done", file=sys.stderr)
    finally:
        await channel.close()
        cleanup = await connection.channel()
        for queue in names.all_queues():
            await cleanup.queue_delete(queue)
        for exchange in names.exchanges:
            await cleanup.exchange_delete(exchange)
        await connection.close()
        await pool.close()
        admin = await asyncpg.connect(f"{POSTGRES}/postgres")
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()

    print_ratios(
        f"{count} outbox events x {rounds} rounds, batches of {outbox.BATCH} (median)",
        rates,
        unit="events/s",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
