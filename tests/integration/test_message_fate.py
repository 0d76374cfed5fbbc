"""A message's fate follows its exception (real RabbitMQ): only transient failures walk
the retry ladder; a permanent error or a bug goes straight to the dead-letter queue, with
its traceback in the log."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest

from schemas.events import RegisterRequested, envelope
from service import amqp
from service.errors import PermanentError, RetryableError
from tests.conftest import drop_topology
from workers.runner import Consumer, RetryPolicy

RETRY_DELAY_S = 60.0  # long enough that the copy is still parked when we look


@pytest.fixture
async def topology(amqp_connection):
    names = amqp.Names(f"fate_{uuid.uuid4().hex[:8]}")
    publisher = await amqp.open_publisher(
        amqp_connection, names, max_length=1000, timeout=5, retry_delays=(RETRY_DELAY_S,)
    )
    yield names, publisher
    await drop_topology(amqp_connection, names.prefix, retry_delays=(RETRY_DELAY_S,))


async def _take(channel, queue: str) -> int:
    """How many messages `queue` holds now, taking them (a quorum queue's declare-ok
    message count lags, so it is not a reliable way to ask)."""
    declared = await channel.get_queue(queue, ensure=False)
    taken = 0
    while (message := await declared.get(fail=False)) is not None:
        await message.ack()
        taken += 1
    return taken


async def _handle_one(amqp_connection, names, publisher, error: BaseException) -> tuple[int, int]:
    """Publish one command, let a handler raising `error` take it; (in retry, in DLQ)."""
    channel = await amqp_connection.channel()
    handled = asyncio.Event()

    async def handler(_event, _data) -> None:
        handled.set()
        raise error

    consumer = Consumer(
        channel,
        names.queue("registration"),
        {"register.requested": handler},
        retry=RetryPolicy(
            publisher=publisher, queues=(names.retry_queue("registration", RETRY_DELAY_S),)
        ),
    )
    await consumer.start()
    data = RegisterRequested(
        request_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        email="fate@example.com",
        user_name="fate",
        locale="en",
        activation_url="https://app.example/{activationToken}",
        sealed_password="sealed",
    )
    await publisher.publish("register.requested", envelope(data))
    await asyncio.wait_for(handled.wait(), 10)
    await consumer.stop()
    retry_queue = names.retry_queue("registration", RETRY_DELAY_S)
    dead_letters = names.dead_letter_queue("registration")

    async def take_both() -> tuple[int, int]:
        return await _take(channel, retry_queue), await _take(channel, dead_letters)

    counts = (0, 0)
    for _ in range(100):  # the broker moves the message asynchronously
        counts = await take_both()
        if sum(counts):
            await asyncio.sleep(0.3)  # and nothing else arrives after it
            later = await take_both()
            counts = (counts[0] + later[0], counts[1] + later[1])
            break
        await asyncio.sleep(0.1)
    await channel.close()
    return counts


@pytest.mark.parametrize(
    "error",
    [RetryableError("smtp busy"), asyncpg.InterfaceError("connection is closed"), OSError("reset")],
    ids=["retryable", "lost-db-connection", "socket"],
)
async def test_transient_failures_wait_in_a_retry_queue(amqp_connection, topology, error):
    names, publisher = topology
    assert await _handle_one(amqp_connection, names, publisher, error) == (1, 0)


@pytest.mark.parametrize(
    "error",
    [PermanentError("refused"), KeyError("a bug"), ZeroDivisionError()],
    ids=["permanent", "bug-keyerror", "bug-zerodivision"],
)
async def test_permanent_errors_and_bugs_are_dead_lettered_at_once_with_traceback(
    amqp_connection, topology, error, caplog
):
    names, publisher = topology
    with caplog.at_level(logging.ERROR, logger="workers.runner"):
        assert await _handle_one(amqp_connection, names, publisher, error) == (0, 1)
    dead = [r for r in caplog.records if r.getMessage() == "message dead-lettered"]
    assert dead and dead[0].exc_info is not None
    assert dead[0].exc_info[0] is type(error)
