"""Shared fixtures. Every run gets its own database and AMQP prefix and removes them after.

Integration and end-to-end tests use the real PostgreSQL and RabbitMQ on localhost and a
real SMTP server (aiosmtpd); `make test` makes sure the first two are running.
"""

from __future__ import annotations

import csv
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
# The PgBouncer variant (`make test` runs it second): only tests/e2e, whose processes reach
# PostgreSQL through a PgBouncer in transaction-pooling mode started for the run.
THROUGH_PGBOUNCER = os.environ.get("REGISTRAR_TEST_PGBOUNCER") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not THROUGH_PGBOUNCER:
        return
    e2e = Path(__file__).parent / "e2e"
    deselected = [item for item in items if e2e not in item.path.parents]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if e2e in item.path.parents]


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


class PgBouncer:
    """A real PgBouncer in transaction-pooling mode on a free port, in front of the test
    PostgreSQL, as operators run it (docs/pgbouncer.md); its own ini, log and process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "pgbouncer.log"
        postgres = urlsplit(POSTGRES_URL)
        self.user = postgres.username or "postgres"
        (workdir / "users.txt").write_text(f'"{self.user}" ""\n')
        self.ini = workdir / "pgbouncer.ini"
        # Every database by the name the client asks for; trust like the test PostgreSQL.
        # default_pool_size caps server connections per database below what the gateway's
        # and workers' pools may open together: clients share them, transaction by transaction.
        self.ini.write_text(
            f"""[databases]
* = host={postgres.hostname} port={postgres.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "users.txt"}
admin_users = {self.user}
pool_mode = transaction
default_pool_size = 8
max_client_conn = 1000
"""
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (make services installs it)")
        command = [binary, str(self.ini)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            command[1:1] = ["-u", _unprivileged_user()]
        self.process = subprocess.Popen(
            command, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("pgbouncer did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "safe shutdown": waits for transactions
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def url(self, direct_url: str) -> str:
        """`direct_url` (a database on the test PostgreSQL) through this PgBouncer."""
        parts = urlsplit(direct_url)
        return urlunsplit(parts._replace(netloc=f"{self.user}@127.0.0.1:{self.port}"))

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on the admin console (simple query protocol only: psql, not asyncpg)."""
        address = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "pgbouncer"]
        done = subprocess.run(
            ["psql", "-X", "--csv", *address, "-c", f"SHOW {what}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return list(csv.DictReader(done.stdout.splitlines()))


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user to run pgbouncer as")


@pytest.fixture(scope="session")
def pgbouncer(tmp_path_factory) -> Iterator[PgBouncer]:
    """Started on first use; the PgBouncer variant fails without it, other runs skip."""
    bouncer = PgBouncer(tmp_path_factory.mktemp("pgbouncer"))
    try:
        bouncer.start()
    except FileNotFoundError as exc:
        if THROUGH_PGBOUNCER:
            raise
        pytest.skip(str(exc))
    try:
        yield bouncer
    finally:
        bouncer.stop()


async def through_pgbouncer(settings: Settings, bouncer: PgBouncer) -> Settings:
    """`settings` with the pool's path through `bouncer` and the session path direct.

    The statement_timeout the pool cannot send through PgBouncer becomes the database's
    default, as docs/pgbouncer.md tells operators (scoped to this test database)."""
    direct_url = settings.database_session_url
    name = urlsplit(direct_url).path.lstrip("/")
    timeout_ms = round(settings.db_statement_timeout_s * 1000)
    conn = await asyncpg.connect(direct_url)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" SET statement_timeout = {timeout_ms}')
    finally:
        await conn.close()
    return settings.model_copy(
        update={"database_url": bouncer.url(direct_url), "database_direct_url": direct_url}
    )


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
