"""The outbox relay against real PostgreSQL and RabbitMQ: CloudEvents out, each row once;
a row that cannot be published is retried, then parked, and holds nothing back; a broker
that is away is nobody's row's fault."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from prometheus_client import REGISTRY

from schemas.events import (
    CONTENT_TYPE,
    EVENTS,
    CloudEvent,
    EmailDelivered,
    EmailFailed,
    EmailRequested,
    EventData,
    RegistrationRejected,
    UserActivated,
    UserRegistered,
    is_command,
)
from service import amqp
from service.amqp import BrokerUnavailable, Publisher
from service.listen import Listener
from service.outbox import add_event
from service.settings import Settings
from service.supervisor import is_transient
from workers import outbox


class EventTap:
    """An exclusive queue bound to every routing key of `{prefix}.events` and of
    `{prefix}.commands` (a test may look at both; an outside consumer may not)."""

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
    # `publisher` declared the exchanges this binds to.
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    names = amqp.Names(settings.amqp_prefix)
    await queue.bind(names.events, routing_key="#")
    await queue.bind(names.commands, routing_key="#")
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
        EmailRequested(email_id=email_id, tenant_id=tenant_id),
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
    pool: asyncpg.Pool, publisher: Publisher, tap: EventTap, settings: Settings
) -> None:
    """... commands (the workers' email.requested) on the internal exchange, events on the
    public one."""
    names = amqp.Names(settings.amqp_prefix)
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
        assert message.exchange == (names.commands if is_command(routing_key) else names.events)
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


# ---------------------------------------------------------------- failing rows


async def add_row(
    pool: asyncpg.Pool, routing_key: str, body: object = None, *, delay_s: float = 0.0
) -> uuid.UUID:
    """An outbox row as any producer may write one: a valid CloudEvent unless `body` is
    given, due `delay_s` from now."""
    event = CloudEvent(type=f"test.{routing_key}", data={"n": 1})
    await pool.execute(
        "INSERT INTO outbox (event_id, routing_key, body, available_at) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        event.id,
        routing_key,
        event.model_dump(mode="json", exclude_none=True) if body is None else body,
        delay_s,
    )
    return event.id


async def rows_of(pool: asyncpg.Pool, event_ids: set[uuid.UUID]) -> dict[uuid.UUID, dict]:
    rows = await pool.fetch(
        "SELECT event_id, attempts, last_error, parked_at, published_at, "
        "available_at > now() AS waiting FROM outbox WHERE event_id = ANY($1::uuid[])",
        list(event_ids),
    )
    assert len(rows) == len(event_ids)
    return {r["event_id"]: dict(r) for r in rows}


async def make_due(pool: asyncpg.Pool, event_ids: set[uuid.UUID]) -> None:
    """Skip a failed row's backoff."""
    await pool.execute(
        "UPDATE outbox SET available_at = now() WHERE event_id = ANY($1::uuid[])", list(event_ids)
    )


async def delete_rows(pool: asyncpg.Pool, event_ids: set[uuid.UUID]) -> None:
    await pool.execute("DELETE FROM outbox WHERE event_id = ANY($1::uuid[])", list(event_ids))


def parked_total(routing_key: str) -> float:
    sample = REGISTRY.get_sample_value(
        "registrar_outbox_parked_total", {"routing_key": routing_key}
    )
    return sample or 0.0


@pytest.fixture
async def orphan(
    settings: Settings, amqp_connection: AbstractConnection
) -> AsyncIterator[Publisher]:
    """A confirming publisher on an exchange no queue is bound to: every command published
    mandatory comes back unroutable; an event is confirmed (and dropped)."""
    names = amqp.Names(f"{settings.amqp_prefix}_noqueue")
    channel = await amqp_connection.channel(publisher_confirms=True, on_return_raises=True)
    exchanges = {
        name: await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
        for name in (names.commands, names.events)
    }
    yield Publisher(
        channel,
        commands=exchanges[names.commands],
        events=exchanges[names.events],
        timeout=settings.confirm_timeout_s,
    )
    for name in exchanges:  # never bound, so auto_delete won't fire
        await channel.exchange_delete(name)
    await channel.close()


@pytest.fixture
async def broker_away(
    settings: Settings, amqp_connection: AbstractConnection, publisher: Publisher
) -> Publisher:
    """A publisher whose channel is closed, as when the broker connection is lost."""
    channel = await amqp_connection.channel(publisher_confirms=True, on_return_raises=True)
    names = amqp.Names(settings.amqp_prefix)
    commands = await channel.get_exchange(names.commands)
    events = await channel.get_exchange(names.events)
    await channel.close()
    away = Publisher(channel, commands=commands, events=events, timeout=settings.confirm_timeout_s)
    assert not away.is_connected
    return away


async def test_a_poison_row_fails_alone_holds_nothing_back_and_is_parked_after_max_attempts(
    pool: asyncpg.Pool, publisher: Publisher, tap: EventTap, caplog: pytest.LogCaptureFixture
) -> None:
    await drain(pool, publisher)
    poison = await add_row(pool, "user.activated", {"not": "a CloudEvent"})
    events = list(await add_events(pool, [sample_events()[1] for _ in range(5)]))
    parked_before = parked_total("user.activated")
    try:
        # The poison row comes first (lowest id): the row after it goes out all the same.
        assert await outbox.publish_batch(pool, publisher, limit=2, max_attempts=3) == 2
        await tap.wait_for({events[0]})
        row = (await rows_of(pool, {poison}))[poison]
        assert row["attempts"] == 1
        assert row["last_error"].startswith("ValidationError")
        assert row["published_at"] is None and row["parked_at"] is None
        assert row["waiting"], "a failed row is retried after a backoff, not in the next batch"

        # Later rows are not held back: the next batches take them, not the poison row.
        assert await outbox.publish_batch(pool, publisher, limit=2, max_attempts=3) == 2
        assert await outbox.publish_batch(pool, publisher, limit=2, max_attempts=3) == 2
        assert await outbox.publish_batch(pool, publisher, limit=2, max_attempts=3) == 0
        await tap.wait_for(set(events))
        assert None not in await published_at(pool, set(events))
        assert (await rows_of(pool, {poison}))[poison]["attempts"] == 1

        with caplog.at_level(logging.WARNING, logger="workers.outbox"):
            for attempt in (2, 3):
                await make_due(pool, {poison})
                assert await outbox.publish_batch(pool, publisher, max_attempts=3) == 1
                assert (await rows_of(pool, {poison}))[poison]["attempts"] == attempt
        row = (await rows_of(pool, {poison}))[poison]
        assert row["parked_at"] is not None and row["published_at"] is None
        assert row["last_error"].startswith("ValidationError")
        assert parked_total("user.activated") == parked_before + 1
        parked = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(parked) == 1
        assert parked[0].event_id == str(poison)
        assert parked[0].routing_key == "user.activated"
        assert parked[0].error.startswith("ValidationError")

        # Parked means left alone, even once due.
        await make_due(pool, {poison})
        assert await outbox.publish_batch(pool, publisher, max_attempts=3) == 0
        assert len(tap.of(set(events))) == len(events)  # each good row went out once
    finally:
        await delete_rows(pool, {poison})


async def test_unroutable_commands_fail_their_own_rows_and_are_parked_events_go_out(
    pool: asyncpg.Pool, publisher: Publisher, orphan: Publisher
) -> None:
    """Commands (queues of ours consume them, the gateway's included) are published
    mandatory: unroutable, each fails by itself and is parked, never confirmed and lost."""
    await drain(pool, publisher)
    commands = {
        key: await add_row(pool, key)
        for key in ("register.requested", "invite.requested", "email.requested")
    }
    event = await add_row(pool, "user.activated")
    before = {key: parked_total(key) for key in commands}
    ids = {*commands.values(), event}
    try:
        assert await outbox.publish_batch(pool, orphan, max_attempts=2, retry_delay_s=0) == 4
        rows = await rows_of(pool, ids)
        assert rows[event]["published_at"] is not None  # not mandatory: confirmed
        for key, event_id in commands.items():
            assert rows[event_id]["published_at"] is None, key
            assert rows[event_id]["attempts"] == 1, key
            assert "PublishError" in rows[event_id]["last_error"], key
            assert rows[event_id]["parked_at"] is None, key

        assert await outbox.publish_batch(pool, orphan, max_attempts=2, retry_delay_s=0) == 3
        rows = await rows_of(pool, ids)
        for key, event_id in commands.items():
            assert rows[event_id]["attempts"] == 2, key
            assert rows[event_id]["parked_at"] is not None, key
            assert parked_total(key) == before[key] + 1, key
        assert await outbox.publish_batch(pool, orphan, max_attempts=2, retry_delay_s=0) == 0
    finally:
        await delete_rows(pool, ids)


async def test_rows_not_yet_available_are_left_until_their_time(
    pool: asyncpg.Pool, publisher: Publisher, tap: EventTap
) -> None:
    await drain(pool, publisher)
    later = await add_row(pool, "user.activated", delay_s=1.0)
    try:
        assert await outbox.publish_batch(pool, publisher) == 0
        assert await published_at(pool, {later}) == [None]

        # Until the row itself is out: a batch may also hold rows other tests left (in
        # the suite's shared database), so "a batch published something" is not enough.
        deadline = time.monotonic() + 5
        while await published_at(pool, {later}) == [None]:
            assert time.monotonic() < deadline, "the row never became due"
            await outbox.publish_batch(pool, publisher)
            await asyncio.sleep(0.1)
        await tap.wait_for({later})
        assert None not in await published_at(pool, {later})
    finally:
        await delete_rows(pool, {later})


async def test_with_the_broker_away_no_attempt_is_counted_against_any_row(
    pool: asyncpg.Pool, publisher: Publisher, broker_away: Publisher, tap: EventTap
) -> None:
    await drain(pool, publisher)
    events = set(await add_events(pool, sample_events()[1:4]))
    poison = await add_row(pool, "user.activated", {"not": "a CloudEvent"})
    try:
        # max_attempts=1: a single counted failure would park the row.
        with pytest.raises(BrokerUnavailable) as raised:
            await outbox.publish_batch(pool, broker_away, max_attempts=1)
        assert is_transient(raised.value)  # the supervisor backs off and restarts the relay
        for row in (await rows_of(pool, {*events, poison})).values():
            assert row["attempts"] == 0
            assert row["last_error"] is None
            assert row["parked_at"] is None and row["published_at"] is None
            assert not row["waiting"]
    finally:
        await delete_rows(pool, {poison})
    # Back again: the rows go out as if nothing had happened.
    await drain(pool, publisher)
    await tap.wait_for(events)


async def test_a_full_queue_is_backpressure_not_the_rows_fault(
    pool: asyncpg.Pool,
    settings: Settings,
    amqp_connection: AbstractConnection,
    publisher: Publisher,
) -> None:
    """A command nacked because its queue is full (reject-publish) is retried without
    being counted, so a long backlog parks nothing."""
    await drain(pool, publisher)
    names = amqp.Names(f"{settings.amqp_prefix}_full{uuid.uuid4().hex[:6]}")
    full = await amqp.open_publisher(amqp_connection, names, max_length=1, timeout=5)
    rows: list[uuid.UUID] = []
    try:
        # A command whose queue nobody consumes: it fills after a message or two.
        with pytest.raises(BrokerUnavailable):
            for _ in range(6):
                rows.append(await add_row(pool, "invite.requested"))
                await outbox.publish_batch(pool, full, max_attempts=1)
        state = await rows_of(pool, set(rows))
        refused = [r for r in state.values() if r["published_at"] is None]
        assert refused, "the queue should have refused some rows"
        assert all(r["attempts"] == 0 and r["parked_at"] is None for r in refused)
    finally:
        await delete_rows(pool, set(rows))
        channel = await amqp_connection.channel()
        for queue in names.all_queues():
            await channel.queue_delete(queue)
        for exchange in names.exchanges:
            await channel.exchange_delete(exchange)
        await channel.close()


# ---------------------------------------------------------------- the relay loop


def start_relay(
    pool: asyncpg.Pool, publisher: Publisher, *, max_attempts: int = 5
) -> tuple[asyncio.Task, asyncio.Event, asyncio.Event]:
    """The relay as the composition root runs it (cli/workers.py)."""
    wake, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        outbox.relay(pool, publisher, wake=wake, stop=stop, max_attempts=max_attempts)
    )
    return task, wake, stop


async def test_relay_is_woken_by_notify_and_publishes_well_before_its_idle_poll(
    pool: asyncpg.Pool, publisher: Publisher, settings: Settings, tap: EventTap
) -> None:
    """The composition root's Listener sets `wake` on every NOTIFY from an outbox insert."""
    await drain(pool, publisher)
    task, wake, stop = start_relay(pool, publisher)
    listener = Listener(settings.database_url, outbox.CHANNEL, lambda _payload: wake.set())
    listening = asyncio.create_task(listener.run())
    try:
        while not listener.alive:
            await asyncio.sleep(0.02)
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
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    assert task.exception() is None


async def test_relay_publishes_past_a_poison_row_without_waiting_for_its_poll(
    pool: asyncpg.Pool,
    publisher: Publisher,
    tap: EventTap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More than a batch behind a poison row: the pass goes on to the next batch at once
    (a batch with a failed row is still a full batch)."""
    await drain(pool, publisher)
    monkeypatch.setattr(outbox, "IDLE_POLL_S", 60.0)
    poison = await add_row(pool, "user.activated", {"not": "a CloudEvent"})
    events = set(await add_events(pool, [sample_events()[1] for _ in range(outbox.BATCH + 20)]))
    task, _wake, stop = start_relay(pool, publisher, max_attempts=1)
    try:
        await tap.wait_for(events, timeout=10)
        assert (await rows_of(pool, {poison}))[poison]["parked_at"] is not None
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)
        await delete_rows(pool, {poison})
    assert task.exception() is None


async def test_a_relay_whose_connection_is_lost_fails_transiently_and_a_new_one_publishes(
    pool: asyncpg.Pool, publisher: Publisher, tap: EventTap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay keeps one connection between passes: when the server drops it, the relay
    ends with an error the supervisor treats as transient (and restarts it with a fresh
    connection), and nothing is lost."""
    await drain(pool, publisher)
    monkeypatch.setattr(outbox, "IDLE_POLL_S", 0.1)
    task, wake, stop = start_relay(pool, publisher)
    try:
        while not await pool.fetchval(RELAY_BACKENDS):  # its first pass has run
            await asyncio.sleep(0.05)
        await pool.execute(f"SELECT pg_terminate_backend(pid) FROM ({RELAY_BACKENDS}) AS r")
        wake.set()
        with pytest.raises(Exception) as lost:  # whatever asyncpg raises
            await asyncio.wait_for(task, timeout=10)
        assert is_transient(lost.value), repr(lost.value)
    finally:
        stop.set()
    events = set(await add_events(pool, sample_events()[1:2]))
    task, _wake, stop = start_relay(pool, publisher)
    try:
        await tap.wait_for(events, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)
    assert task.exception() is None


RELAY_BACKENDS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND query LIKE '%FOR UPDATE SKIP LOCKED%'"
)


async def test_only_rows_due_now_notify(pool: asyncpg.Pool, settings: Settings) -> None:
    """A row left for later (the gateway's safety-net copy of a command) wakes no relay:
    of a later row and a due one, committed in that order, only the due one notifies."""
    heard: list[str] = []
    conn = await asyncpg.connect(settings.database_url)
    later = due = None
    try:
        await conn.add_listener(outbox.CHANNEL, lambda *args: heard.append(args[-1]))
        later = await add_row(pool, "user.activated", delay_s=30.0)
        due = await add_row(pool, "user.activated")
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # Notifications arrive in commit order: the later row's would have come first.
        await conn.fetchval("SELECT 1")
        assert heard == [""]
    finally:
        await conn.close()
        await delete_rows(pool, {e for e in (later, due) if e is not None})


async def test_relay_polls_for_rows_that_become_due(
    pool: asyncpg.Pool, publisher: Publisher, tap: EventTap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No NOTIFY comes when a row's available_at arrives: the idle poll finds it."""
    await drain(pool, publisher)
    monkeypatch.setattr(outbox, "IDLE_POLL_S", 0.2)
    task, _wake, stop = start_relay(pool, publisher)
    started = time.monotonic()
    later = await add_row(pool, "user.activated", delay_s=1.0)
    try:
        await tap.wait_for({later}, timeout=5)
        assert time.monotonic() - started >= 0.9, "published before it was due"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)
        await delete_rows(pool, {later})
    assert task.exception() is None


async def test_relay_returns_promptly_once_stop_is_set(
    pool: asyncpg.Pool, publisher: Publisher
) -> None:
    await drain(pool, publisher)
    task, _wake, stop = start_relay(pool, publisher)
    await asyncio.sleep(0.3)  # idle now, waiting up to IDLE_POLL_S
    assert not task.done()
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=1)
    assert time.monotonic() - started < 0.5
    assert task.exception() is None


async def test_relay_raises_a_transient_error_for_its_supervisor_instead_of_swallowing_it(
    pool: asyncpg.Pool, publisher: Publisher, broker_away: Publisher, tap: EventTap
) -> None:
    await drain(pool, publisher)
    events = set(await add_events(pool, sample_events()[1:2]))
    task, _wake, stop = start_relay(pool, broker_away)
    try:
        with pytest.raises(BrokerUnavailable) as raised:
            await asyncio.wait_for(task, timeout=3)
        assert is_transient(raised.value)
    finally:
        stop.set()
    assert (await rows_of(pool, events))[next(iter(events))]["attempts"] == 0
    await drain(pool, publisher)
    await tap.wait_for(events)
