"""Shared fixtures. Every run gets its own database and AMQP prefix and removes them after.

Integration and end-to-end tests use the real PostgreSQL and RabbitMQ on localhost and a
real SMTP server (aiosmtpd); `make test` makes sure the first two are running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import aio_pika
import altcha
import asyncpg
import hypothesis
import pytest
from aiosmtpd.controller import Controller

from service import db
from service.amqp import Names
from service.sealing import generate_key_pair
from service.settings import Settings

# CI replays the same generated examples on every run (a failure there must reproduce);
# elsewhere Hypothesis explores new ones each time.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "default")

POSTGRES_URL = os.environ.get("REGISTRAR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("REGISTRAR_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


def wait_ready(url: str, processes: list[subprocess.Popen], timeout: float = 60) -> None:
    """Poll `url` until it answers 200; fail at once if one of `processes` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in processes:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
async def database_url(run_id: str) -> AsyncIterator[str]:
    url = f"{POSTGRES_URL}/registrar_test_{run_id}"
    await db.migrate(url)
    yield url
    await drop_database(url)


async def drop_database(url: str) -> None:
    """Drop a test database, disconnecting whoever still uses it."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings(database_url: str, run_id: str) -> Settings:
    public, private = generate_key_pair()
    return Settings(
        database_url=database_url,
        amqp_url=AMQP_URL,
        amqp_prefix=f"test_{run_id}",
        seal_public_key=public,
        seal_private_key=private,
    )


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings.database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def amqp_connection(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    connection = await aio_pika.connect_robust(settings.amqp_url)
    yield connection
    await drop_topology(connection, settings.amqp_prefix)
    await connection.close()


async def drop_topology(
    connection: aio_pika.abc.AbstractConnection,
    prefix: str,
    *,
    retry_delays: tuple[float, ...] = Settings.model_fields["retry_delays_s"].default,
) -> None:
    """Delete the exchanges and queues a test run declared under `prefix`."""
    names = Names(prefix)
    channel = await connection.channel()
    for queue in names.all_queues(retry_delays):
        await channel.queue_delete(queue)
    for exchange in names.exchanges:
        await channel.exchange_delete(exchange)
    await channel.close()


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free port that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        with self._lock:
            self.messages.append(message)
        return "250 OK"

    def received(self, predicate: Callable[[EmailMessage], bool]) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if predicate(m)]

    async def wait_for(
        self, predicate: Callable[[EmailMessage], bool], *, timeout: float = 20
    ) -> EmailMessage:
        import asyncio

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(predicate)
            if found:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError("no matching email arrived")


@pytest.fixture(scope="session")
def mailbox() -> Mailbox:
    box = Mailbox()
    box.controller.start()
    yield box
    box.controller.stop()


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a received email."""
    return message.get_body(preferencelist=("plain",)).get_content()


def solve_pow(challenge: dict) -> str:
    """What a client (the ALTCHA widget) sends back as challengeResponse."""
    solution = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"]
    )
    assert solution is not None
    return altcha.PayloadV1(
        algorithm=challenge["algorithm"],
        challenge=challenge["challenge"],
        number=solution.number,
        salt=challenge["salt"],
        signature=challenge["signature"],
    ).to_base64()
