"""End-to-end fixtures: the real gateway and workers as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg
import pytest

from service import db
from service.settings import Settings
from tests.conftest import (
    THROUGH_PGBOUNCER,
    Mailbox,
    drop_database,
    drop_topology,
    free_port,
    through_pgbouncer,
    wait_ready,
)

REGISTRAR = str(Path(sys.executable).parent / "registrar")


@dataclass
class Service:
    base_url: str
    env: dict[str, str]
    logs: list[Path]
    workers_metrics_url: str

    def cli(self, *args: str) -> dict:
        """Run `registrar ARGS` against this service's database; parse its JSON output."""
        done = subprocess.run(
            [REGISTRAR, *args], env=self.env, capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)

    def log_text(self) -> str:
        return "".join(path.read_text() for path in self.logs)


@pytest.fixture(scope="session")
async def e2e_settings(settings: Settings, amqp_connection, request) -> AsyncIterator[Settings]:
    """The processes get a database and AMQP prefix of their own: their outbox relay and
    mailer must not take rows that the in-process integration tests are watching.
    In the PgBouncer variant their pools (and ours) go through PgBouncer."""
    own = settings.model_copy(
        update={
            "database_url": f"{settings.database_url}_e2e",
            "amqp_prefix": f"{settings.amqp_prefix}_e2e",
        }
    )
    await db.migrate(own.database_session_url)
    if THROUGH_PGBOUNCER:
        own = await through_pgbouncer(own, request.getfixturevalue("pgbouncer"))
    yield own
    await drop_topology(amqp_connection, own.amqp_prefix)
    await drop_database(own.database_session_url)


@pytest.fixture(scope="session")
async def e2e_pool(e2e_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(
        e2e_settings.database_url, behind_pooler=e2e_settings.database_behind_pooler
    )
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def service(e2e_settings: Settings, mailbox: Mailbox, tmp_path_factory) -> Iterator[Service]:
    """Gateway + all workers as processes, stopped with SIGTERM (which must exit 0)."""
    settings = e2e_settings
    port = free_port()
    logs_dir = tmp_path_factory.mktemp("logs")
    env = {
        **os.environ,
        "REGISTRAR_DATABASE_URL": settings.database_url,
        "REGISTRAR_AMQP_URL": settings.amqp_url,
        "REGISTRAR_AMQP_PREFIX": settings.amqp_prefix,
        "REGISTRAR_SMTP_URL": f"smtp://127.0.0.1:{mailbox.port}",
        "REGISTRAR_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "REGISTRAR_SEAL_PUBLIC_KEY": settings.seal_public_key or "",
        "REGISTRAR_SEAL_PRIVATE_KEY": settings.seal_private_key.get_secret_value(),
        "REGISTRAR_LOG_LEVEL": "DEBUG",
        # The suite makes many requests from one address; production keeps the default.
        "REGISTRAR_RATE_LIMIT_BURST": "10000",
        "REGISTRAR_LOGIN_ADDRESS_RATE_LIMIT_BURST": "10000",
        # Webhook receivers of the tests listen on 127.0.0.1 over http, and an outage
        # should cost them a second, not minutes of backoff.
        "REGISTRAR_WEBHOOK_ALLOW_PRIVATE": "true",
        "REGISTRAR_WEBHOOK_RETRY_BASE_S": "0.2",
        "REGISTRAR_WEBHOOK_RETRY_MAX_DELAY_S": "1",
    }
    if settings.database_direct_url:  # the PgBouncer variant: LISTEN and migrations direct
        env["REGISTRAR_DATABASE_DIRECT_URL"] = settings.database_direct_url
    metrics_port = free_port()
    commands = {
        "gateway": ([REGISTRAR, "gateway", "--port", str(port)], {}),
        "workers": (
            [REGISTRAR, "worker", "all"],
            {"REGISTRAR_METRICS_PORT": str(metrics_port), "REGISTRAR_METRICS_HOST": "127.0.0.1"},
        ),
    }
    processes, logs = [], []
    for name, (command, extra_env) in commands.items():
        log_path = logs_dir / f"{name}.log"
        logs.append(log_path)
        processes.append(
            subprocess.Popen(
                command,
                env={**env, **extra_env},
                stdout=log_path.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", processes)
        wait_ready(f"http://127.0.0.1:{metrics_port}/healthz", processes)
        yield Service(
            f"http://127.0.0.1:{port}", env, logs, f"http://127.0.0.1:{metrics_port}/metrics"
        )
    finally:
        for proc in processes:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in processes]
    assert codes == [0, 0], f"SIGTERM must end each process cleanly, got {codes}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def tenant(service: Service) -> dict:
    return service.cli(
        "tenant", "create", "Acme", "--activation-url-prefix", "https://app.example.com/"
    )


@pytest.fixture
async def events_queue(amqp_connection, e2e_settings: Settings):
    """A queue of our own bound to every event, as another system would bind one."""
    channel = await amqp_connection.channel()
    exchange = await channel.get_exchange(f"{e2e_settings.amqp_prefix}.events")
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    yield queue
    await channel.close()


@pytest.fixture
async def commands_queue(amqp_connection, e2e_settings: Settings):
    """A tap on every internal command (a test may bind one; outside systems may not)."""
    channel = await amqp_connection.channel()
    exchange = await channel.get_exchange(f"{e2e_settings.amqp_prefix}.commands")
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    yield queue
    await channel.close()


async def next_event(queue: aio_pika.abc.AbstractQueue, routing_key: str, *, timeout: float = 20):
    """The next message with `routing_key` (others are acked and skipped)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        if message.routing_key == routing_key:
            return message
    raise AssertionError(f"no {routing_key} event arrived")


@pytest.fixture(scope="session")
def org(service: Service) -> dict:
    """A tenant with a users:invite bearer token, as an organization would hold."""
    tenant = service.cli("tenant", "create", "Acme Org", "--default-locale", "en")
    token = service.cli("token", "create", "--tenant", tenant["id"], "--scope", "users:invite")
    return {**tenant, "token": token["token"], "tokenId": token["id"]}
