"""The broker users of deploy/rabbitmq/definitions.json on the real broker: temporary
users get their permissions (prefix substituted), then we try what they must not do.
Needs `rabbitmqctl`; the users are deleted afterwards."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused

from schemas.events import RegisterRequested, envelope
from service import amqp
from service.amqp import Names
from tests.conftest import AMQP_URL, drop_topology
from tests.unit.test_deploy_definitions import DEFINITIONS

pytestmark = pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="no rabbitmqctl")


async def rabbitmqctl(*args: str) -> None:
    done = await asyncio.to_thread(
        subprocess.run, ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        pytest.skip(f"rabbitmqctl failed: {done.stderr.strip()[:200]}")


@pytest.fixture
async def names(amqp_connection) -> AsyncIterator[Names]:
    names = Names(f"perm_{uuid.uuid4().hex[:8]}")
    await amqp.open_publisher(amqp_connection, names, max_length=100, timeout=5)
    yield names
    await drop_topology(amqp_connection, names.prefix, retry_delays=())


@pytest.fixture
async def login(names: Names):
    """Log in as a temporary copy of a user of definitions.json, under `names.prefix`."""
    made: list[str] = []
    permissions = {p["user"]: p for p in json.loads(DEFINITIONS.read_text())["permissions"]}

    async def login(user: str) -> aio_pika.abc.AbstractRobustConnection:
        name, password = f"test-{user}-{uuid.uuid4().hex[:6]}", secrets.token_hex(16)
        regexes = [
            permissions[user][what].replace("registrar\\.", f"{names.prefix}\\.")
            for what in ("configure", "write", "read")
        ]
        await rabbitmqctl("add_user", name, password)
        made.append(name)
        await rabbitmqctl("set_permissions", "-p", "/", name, *regexes)
        url = urlsplit(AMQP_URL)
        netloc = f"{name}:{password}@{url.hostname}:{url.port or 5672}"
        return await aio_pika.connect_robust(urlunsplit(url._replace(netloc=netloc)))

    yield login
    for name in made:
        await rabbitmqctl("delete_user", name)


def a_command_data() -> RegisterRequested:
    return RegisterRequested(
        request_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        email="x@example.com",
        user_name="x",
        locale="en",
        activation_url="https://x/{activationToken}",
        sealed_password="-",
    )


def a_command() -> aio_pika.Message:
    return aio_pika.Message(envelope(a_command_data()).model_dump_json().encode())


async def test_a_consumer_cannot_publish_or_bind_to_commands_but_binds_to_events(
    names: Names, login
) -> None:
    connection = await login("consumer")
    try:
        channel = await connection.channel()
        # Exclusive: gone with the connection (an auto-delete queue that never had a
        # consumer would stay on the broker after the test).
        queue = await channel.declare_queue(f"consumer.{names.prefix}", exclusive=True)
        await queue.bind(names.events, routing_key="#")

        with pytest.raises(ChannelAccessRefused):
            await queue.bind(names.commands, routing_key="#")

        channel = await connection.channel(publisher_confirms=True)
        commands = await channel.get_exchange(names.commands)
        with pytest.raises(ChannelAccessRefused):
            await commands.publish(a_command(), routing_key="register.requested")

        channel = await connection.channel(publisher_confirms=True)
        events = await channel.get_exchange(names.events)
        with pytest.raises(ChannelAccessRefused):
            await events.publish(a_command(), routing_key="user.registered")
    finally:
        await connection.close()


async def test_the_gateway_finds_the_topology_publishes_commands_and_reads_nothing(
    names: Names, login
) -> None:
    connection = await login("registrar-gateway")
    try:
        publisher = await amqp.open_publisher(
            connection, names, max_length=100, timeout=5, declare=False
        )
        await publisher.publish("register.requested", envelope(a_command_data()))  # confirmed

        channel = await connection.channel()
        queue = await channel.get_queue(names.queue("registration"))
        with pytest.raises(ChannelAccessRefused):
            await queue.get(fail=False)

        with pytest.raises(ChannelAccessRefused):
            await amqp.open_publisher(connection, names, max_length=100, timeout=5)
    finally:
        await connection.close()
