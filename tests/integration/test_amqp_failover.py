"""REGISTRAR_AMQP_URL with several nodes, against the real default broker: the first node
that answers is used, and a connection whose node drops it moves on to the next node and
keeps publishing (confirmed) and consuming. The two "nodes" of the failover test are the
same broker spelled twice (127.0.0.1 and localhost); the drop is `rabbitmqctl
close_connection` on our own connection only, found by its unique connection name.
The real three-node cluster losing a node is `make cluster` (tests/faults/cluster.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from aio_pika.abc import AbstractIncomingMessage

from schemas.events import RegisterRequested, envelope
from service import amqp
from service.amqp import FailoverConnection, Names, Publisher
from tests.conftest import AMQP_URL, drop_topology

# A generous deadline for things that take a moment (a reconnection, a delivery); the
# tests assert what happens, never how fast.
DEADLINE_S = 60


def with_host(url: str, host: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port or parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "--quiet", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-500:]
    return done.stdout


def close_server_side(connection_name: str) -> None:
    """What a node's death looks like to a client: the broker drops the connection."""
    listing = rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{connection_name}"}}' in line
    ]
    assert len(pids) == 1, f"expected one connection named {connection_name}: {pids}"
    rabbitmqctl("close_connection", pids[0], "test: node lost")


def a_command() -> RegisterRequested:
    return RegisterRequested(
        request_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        email=f"{uuid.uuid4().hex[:8]}@example.com",
        user_name="failover",
        locale="en",
        activation_url="https://x/{activationToken}",
        sealed_password="-",
    )


@pytest.fixture
async def names(amqp_connection) -> AsyncIterator[Names]:
    names = Names(f"failover_{uuid.uuid4().hex[:8]}")
    yield names
    await drop_topology(amqp_connection, names.prefix, retry_delays=())


async def open_publisher(connection, names: Names) -> Publisher:
    return await amqp.open_publisher(connection, names, max_length=1000, timeout=DEADLINE_S)


async def test_the_first_node_that_answers_is_used(names: Names) -> None:
    dead_first = f"{with_host(AMQP_URL, '127.0.0.1', port=1)},{AMQP_URL}"
    connection = await amqp.connect(dead_first)
    try:
        assert isinstance(connection, FailoverConnection)
        assert connection.node == 1
        publisher = await open_publisher(connection, names)
        await publisher.publish("register.requested", envelope(a_command()))  # confirmed
    finally:
        await connection.close()


async def test_no_node_answering_is_an_error() -> None:
    with pytest.raises(ConnectionError):
        await amqp.connect(with_host(AMQP_URL, "127.0.0.1", port=1))


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="no rabbitmqctl")
async def test_a_connection_whose_node_drops_it_fails_over_and_carries_on(
    names: Names,
) -> None:
    connection_name = f"test-failover-{uuid.uuid4().hex[:8]}"
    nodes = f"{with_host(AMQP_URL, '127.0.0.1')},{with_host(AMQP_URL, 'localhost')}"
    connection = await amqp.connect(nodes, name=connection_name)
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: reconnected.set())
    received: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        received.put_nowait(message.message_id)
        await message.ack()

    try:
        publisher = await open_publisher(connection, names)
        channel = await connection.channel()
        queue = await channel.get_queue(names.queue("registration"), ensure=True)
        await queue.consume(on_message)
        assert connection.url.host == "127.0.0.1"

        for expected_node, host in ((1, "localhost"), (0, "127.0.0.1")):
            reconnected.clear()
            await asyncio.to_thread(close_server_side, connection_name)
            await asyncio.wait_for(reconnected.wait(), DEADLINE_S)
            assert (connection.node, connection.url.host) == (expected_node, host)

            event = envelope(a_command())
            await publisher.publish("register.requested", event)  # confirmed on the new node
            delivered = await asyncio.wait_for(received.get(), DEADLINE_S)
            assert delivered == str(event.id)  # the consumer was restored there
    finally:
        await connection.close()
