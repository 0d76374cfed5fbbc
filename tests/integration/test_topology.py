"""The declared topology on the real broker: every queue is a quorum queue, every queue
that dead-letters does so at-least-once, and a retry queue hands an expired message back
to its work queue."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from aiormq.exceptions import ChannelPreconditionFailed

from service import amqp
from service.amqp import Names, Publisher, QueueSpec
from tests.conftest import drop_topology

RETRY_DELAYS = (0.3, 60.0)


@pytest.fixture
async def topology(
    amqp_connection: AbstractConnection,
) -> AsyncIterator[tuple[Names, Publisher]]:
    names = Names(f"topo_{uuid.uuid4().hex[:8]}")
    publisher = await amqp.open_publisher(
        amqp_connection, names, max_length=1000, timeout=5, retry_delays=RETRY_DELAYS
    )
    yield names, publisher
    await drop_topology(amqp_connection, names.prefix, retry_delays=RETRY_DELAYS)


def specs(names: Names) -> list[QueueSpec]:
    return amqp.queue_specs(names, max_length=1000, retry_delays=RETRY_DELAYS)


def dead_lettering(names: Names) -> list[QueueSpec]:
    found = [spec for spec in specs(names) if "x-dead-letter-exchange" in spec.arguments]
    assert len(found) == 3 * (1 + len(RETRY_DELAYS))  # work queues and retry queues
    return found


async def test_the_broker_holds_every_queue_with_exactly_the_declared_arguments(
    amqp_connection: AbstractConnection, topology: tuple[Names, Publisher]
) -> None:
    """RabbitMQ checks x-dead-letter-strategy, x-queue-type, x-overflow, ... on redeclare:
    redeclaring with the expected arguments passes, with the strategy left out it fails."""
    names, _publisher = topology
    for spec in specs(names):
        channel = await amqp_connection.channel()
        await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        await channel.close()
    for spec in dead_lettering(names):
        assert spec.arguments["x-queue-type"] == "quorum"
        assert spec.arguments["x-dead-letter-strategy"] == "at-least-once"
        assert spec.arguments["x-overflow"] == "reject-publish"
        without = {k: v for k, v in spec.arguments.items() if k != "x-dead-letter-strategy"}
        channel = await amqp_connection.channel()
        with pytest.raises(ChannelPreconditionFailed, match="x-dead-letter-strategy"):
            await channel.declare_queue(spec.name, durable=True, arguments=without)
        assert channel.is_closed


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl not installed")
async def test_rabbitmqctl_lists_quorum_queues_that_dead_letter_at_least_once(
    topology: tuple[Names, Publisher],
) -> None:
    names, _publisher = topology
    listing = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "list_queues", "name", "type", "arguments", "--formatter", "json", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if listing.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot reach the broker: {listing.stderr.strip()[:200]}")
    queues = {
        q["name"]: (q["type"], {name: value for name, _type, value in q["arguments"]})
        for q in json.loads(listing.stdout)
        if q["name"].startswith(f"{names.prefix}.")
    }
    assert set(queues) == {spec.name for spec in specs(names)}
    assert all(kind == "quorum" for kind, _arguments in queues.values())
    for spec in dead_lettering(names):
        _kind, arguments = queues[spec.name]
        assert arguments["x-dead-letter-strategy"] == "at-least-once", spec.name
        assert arguments["x-overflow"] == "reject-publish", spec.name


async def test_a_message_expiring_in_a_retry_queue_lands_in_its_work_queue(
    amqp_connection: AbstractConnection, topology: tuple[Names, Publisher]
) -> None:
    names, publisher = topology
    retry_queue = names.retry_queue("mailer", RETRY_DELAYS[0])
    message_id = str(uuid.uuid4())
    sent = time.monotonic()
    await publisher.send_to_queue(
        retry_queue,
        aio_pika.Message(
            b"{}", message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        ),
    )
    channel = await amqp_connection.channel()
    work = await channel.get_queue(names.queue("mailer"))
    deadline = sent + 10
    try:
        while (message := await work.get(fail=False)) is None:
            assert time.monotonic() < deadline, "the expired message never reached its queue"
            await asyncio.sleep(0.05)
        waited = time.monotonic() - sent
        await message.ack()
    finally:
        await channel.close()
    assert message.message_id == message_id
    assert waited >= RETRY_DELAYS[0], f"arrived after {waited:.2f} s, before its TTL"
    assert message.headers["x-first-death-reason"] == "expired"
    assert message.headers["x-first-death-queue"] == retry_queue
