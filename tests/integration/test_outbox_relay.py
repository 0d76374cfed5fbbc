"""The outbox relay against real PostgreSQL and RabbitMQ: CloudEvents out, each row once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from schemas.events import (
    CONTENT_TYPE,
    EVENTS,
    EmailDelivered,
    EmailFailed,
    EmailRequested,
    EventData,
    RegistrationRejected,
    UserActivated,
    UserRegistered,
)
from service import amqp
from service.amqp import Publisher
from service.outbox import add_event
from service.settings import Settings
from workers import outbox


class EventTap:
    """An exclusive queue bound to every routing key of `{prefix}.events`."""

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []
        self._arrived = asyncio.Event()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)
        self._arrived.set()

    def of(self, event_ids: set[uuid.UUID]) -> list[AbstractIncomingMessage]:
        wanted = {str(i) for i in event_ids}
        return [m for m in self.messages if m.message_id in wanted]

    async def wait_for(
        self, event_ids: set[uuid.UUID], *, timeout: float = 10
    ) -> list[AbstractIncomingMessage]:
        deadline = time.monotonic() + timeout
        while {m.message_id for m in self.of(event_ids)} != {str(i) for i in event_ids}:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{len(self.of(event_ids))} of {len(event_ids)} events arrived"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.of(event_ids)


@pytest.fixture
async def tap(
    settings: Settings, amqp_connection: AbstractConnection, publisher: Publisher
) -> AsyncIterator[EventTap]:
    # `publisher` declared the exchange this binds to.
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(amqp.Names(settings.amqp_prefix).events, routing_key="#")
    tap = EventTap()
    tag = await queue.consume(tap.on_message, no_ack=True)
    yield tap
    await queue.cancel(tag)
    await channel.close()


async def drain(pool: asyncpg.Pool, publisher: Publisher) -> None:
    """Publish what other tests left in the shared outbox, so counts below are ours."""
    while await outbox.publish_batch(pool, publisher):
        pass


def sample_events() -> list[EventData]:
    """One of every event a worker writes to the outbox."""
    tenant_id, user_id, email_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    return [
        UserRegistered(
            user_id=user_id,
            tenant_id=tenant_id,
            email="a@example.com",
            user_name="ann",
            name="",
            locale="en",
            is_approved=False,
            roles=["User"],
            source="self",
            registered_at=now,
            request_id=uuid.uuid4(),
        ),
        UserActivated(user_id=user_id, tenant_id=tenant_id, activated_at=now),
        RegistrationRejected(request_id=uuid.uuid4(), tenant_id=tenant_id, reason="email_taken"),
        EmailRequested(
            email_id=email_id,
            tenant_id=tenant_id,
            kind="activation",
            to="a@example.com",
            locale="en",
            user_name="ann",
            activation_url="https://app.example/{activationToken}",
            activation_token_id=uuid.uuid4(),
        ),
        EmailDelivered(
            email_id=email_id,
            tenant_id=tenant_id,
            kind="activation",
            to="a@example.com",
            attempts=1,
        ),
        EmailFailed(
            email_id=email_id,
            tenant_id=tenant_id,
            kind="activation",
            to="a@example.com",
            attempts=5,
            error="550 mailbox unavailable",
        ),
    ]


async def add_events(pool: asyncpg.Pool, events: list[EventData]) -> dict[uuid.UUID, EventData]:
    async with pool.acquire() as conn, conn.transaction():
        return {await add_event(conn, data, subject="s"): data for data in events}


async def published_at(pool: asyncpg.Pool, event_ids: set[uuid.UUID]) -> list[object]:
    rows = await pool.fetch(
        "SELECT published_at FROM outbox WHERE event_id = ANY($1::uuid[])", list(event_ids)
    )
    assert len(rows) == len(event_ids)
    return [r["published_at"] for r in rows]


async def test_publish_batch_sends_each_row_as_a_persistent_structured_cloudevent(
    pool: asyncpg.Pool, publisher: Publisher, tap: EventTap
) -> None:
    await drain(pool, publisher)
    events = await add_events(pool, sample_events())
    assert all(at is None for at in await published_at(pool, set(events)))

    assert await outbox.publish_batch(pool, publisher) == len(events)

    messages = await tap.wait_for(set(events))
    assert len(messages) == len(events)
    for message in messages:
        body = json.loads(message.body)
        data = events[uuid.UUID(body["id"])]
        routing_key = message.routing_key
        expected_type = EVENTS[routing_key][0]
        assert isinstance(data, EVENTS[routing_key][1])
        assert message.content_type == CONTENT_TYPE == "application/cloudevents+json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.message_id == body["id"]
        assert message.type == expected_type
        assert body["specversion"] == "1.0"
        assert body["type"] == expected_type
        assert body["source"] == "urn:registrar"
        assert body["subject"] == "s"
        assert body["datacontenttype"] == "application/json"
        dt.datetime.fromisoformat(body["time"])
        assert body["data"] == data.model_dump(mode="json", by_alias=True)
    assert all(at is not None for at in await published_at(pool, set(events)))
    assert await outbox.publish_batch(pool, publisher) == 0


async def test_two_concurrent_publish_batches_publish_each_row_exactly_once(
    pool: asyncpg.Pool, publisher: Publisher, tap: EventTap
) -> None:
    await drain(pool, publisher)
    events = await add_events(pool, [e for _ in range(20) for e in sample_events()[1:3]])

    counts = await asyncio.gather(
        outbox.publish_batch(pool, publisher, limit=20),
        outbox.publish_batch(pool, publisher, limit=20),
    )

    # SKIP LOCKED: each batch claimed rows the other had not locked, so both got work.
    assert sorted(counts) == [20, 20]
    await tap.wait_for(set(events))
    await asyncio.sleep(0.5)  # time for duplicates, had any been sent, to arrive
    messages = tap.of(set(events))
    assert sorted(m.message_id for m in messages) == sorted(str(i) for i in events)
    assert all(at is not None for at in await published_at(pool, set(events)))
    assert await outbox.publish_batch(pool, publisher) == 0


async def test_an_unconfirmed_command_leaves_its_row_unpublished(
    pool: asyncpg.Pool, settings: Settings, amqp_connection: AbstractConnection
) -> None:
    """email.requested must reach the mailer queue: unroutable, the batch is not marked."""
    names = amqp.Names(f"{settings.amqp_prefix}_noqueue")
    channel = await amqp_connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.declare_exchange(
        names.events, aio_pika.ExchangeType.TOPIC, auto_delete=True
    )
    orphan = Publisher(channel, exchange, timeout=settings.confirm_timeout_s)
    events = await add_events(pool, [sample_events()[3]])
    try:
        with pytest.raises(amqp.BrokerUnavailable):
            await outbox.publish_batch(pool, orphan)
        assert await published_at(pool, set(events)) == [None]
    finally:
        await pool.execute("DELETE FROM outbox WHERE event_id = ANY($1::uuid[])", list(events))
        await channel.exchange_delete(names.events)  # never bound, so auto_delete won't fire
        await channel.close()


async def test_relay_is_woken_by_notify_and_publishes_well_before_its_idle_poll(
    pool: asyncpg.Pool, publisher: Publisher, settings: Settings, tap: EventTap
) -> None:
    await drain(pool, publisher)
    stop = asyncio.Event()
    task = asyncio.create_task(
        outbox.relay(pool, publisher, database_url=settings.database_url, stop=stop)
    )
    try:
        await asyncio.sleep(0.5)  # its first pass found nothing: it now waits up to 5 s
        assert not task.done()

        started = time.monotonic()
        events = await add_events(pool, sample_events()[1:2])
        await tap.wait_for(set(events), timeout=outbox.IDLE_POLL_S)
        elapsed = time.monotonic() - started

        assert elapsed < 3.0, f"published after {elapsed:.2f} s: the NOTIFY did not wake it"
        # The relay commits published_at just after the broker's confirm.
        deadline = time.monotonic() + 2
        while None in await published_at(pool, set(events)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert None not in await published_at(pool, set(events))

        # Woken again for the next insert, not only the first.
        started = time.monotonic()
        more = await add_events(pool, sample_events()[1:2])
        await tap.wait_for(set(more), timeout=outbox.IDLE_POLL_S)
        assert time.monotonic() - started < 3.0
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)
    assert task.exception() is None
