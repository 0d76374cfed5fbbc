"""Workers run in-process (the real code path of `registrar worker`) against the real
PostgreSQL, RabbitMQ and aiosmtpd, on a database and prefix of their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiosmtpd.controller import Controller

from cli.workers import run_workers
from service import db, tenants
from service.settings import Settings
from tests.conftest import Mailbox, drop_database, drop_topology, free_port

RETRY_DELAYS = (0.3, 0.6, 1.2)


class SwitchableMailbox(Mailbox):
    """A mailbox that can refuse recipients with 550 until told to accept them."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.refuse = False

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture(scope="session")
async def delivery_settings(settings: Settings, amqp_connection) -> AsyncIterator[Settings]:
    own = settings.model_copy(
        update={
            "database_url": f"{settings.database_url}_delivery",
            "amqp_prefix": f"{settings.amqp_prefix}_delivery",
            "smtp_url": f"smtp://127.0.0.1:{free_port()}",
            "retry_delays_s": RETRY_DELAYS,
            "smtp_pool_size": 2,
        }
    )
    await db.migrate(own.database_url)
    yield own
    await drop_topology(amqp_connection, own.amqp_prefix, retry_delays=RETRY_DELAYS)
    # Processes some tests start with the default settings declare the default retry
    # queues under the same prefix.
    await drop_topology(amqp_connection, own.amqp_prefix)
    await drop_database(own.database_url)


@pytest.fixture(scope="session")
async def delivery_pool(delivery_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(delivery_settings.database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def smtp_port(delivery_settings: Settings) -> int:
    return int(delivery_settings.smtp_url.rsplit(":", 1)[1])


@pytest.fixture(scope="session")
async def workers(delivery_settings: Settings) -> AsyncIterator[None]:
    """The mailer and the outbox relay, as `registrar worker mailer outbox` runs them."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(delivery_settings, ["mailer", "outbox"], stop))
    await asyncio.sleep(0.5)
    assert not task.done(), task.exception() if task.done() else None
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=30)


@pytest.fixture(scope="session")
async def org(delivery_pool) -> tenants.Tenant:
    tenant, _ = await tenants.create_tenant(
        delivery_pool,
        name="Mail Co",
        activation_url_prefixes=[],
        default_locale="en",
        mail_from="Mail Co <hello@mail.example>",
    )
    return tenant


@pytest.fixture
async def delivered_events(amqp_connection, delivery_settings: Settings):
    """A queue bound to email.delivered and email.failed, as a consumer would bind one."""
    channel = await amqp_connection.channel()
    exchange = await channel.get_exchange(f"{delivery_settings.amqp_prefix}.events")
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for key in ("email.delivered", "email.failed"):
        await queue.bind(exchange, routing_key=key)

    async def wait_for(routing_key: str, email_id: uuid.UUID, timeout: float = 20) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                await message.ack()
                body = json.loads(message.body)
                if message.routing_key == routing_key and body["data"]["emailId"] == str(email_id):
                    return body

    yield wait_for
    with contextlib.suppress(Exception):
        await channel.close()
