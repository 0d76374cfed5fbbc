"""Opening a process's connections, waiting for PostgreSQL and RabbitMQ to come up.

A process started while a dependency restarts (a deploy, a failover) waits for it with
backoff for a while instead of crashing; after `STARTUP_DEADLINE_S` it gives up with the
last error, and the orchestrator restarts it.
"""

from __future__ import annotations

from collections.abc import Awaitable

import asyncpg
from aio_pika.abc import AbstractRobustConnection

from service import amqp, db
from service.settings import Settings
from service.supervisor import retry_transient

STARTUP_DEADLINE_S = 60.0
CONNECT_ATTEMPT_S = 10.0


def create_pool(
    settings: Settings,
    *,
    max_size: int = 10,
    direct: bool = False,
    statement_timeout_s: float | None = None,
) -> Awaitable[asyncpg.Pool]:
    """A PostgreSQL pool as the settings describe it: their URL and timeouts, and whether
    `REGISTRAR_DATABASE_URL` is a transaction pooler. `direct`: PostgreSQL itself even
    behind a pooler (what needs a session of its own, or a statement timeout of its own:
    `statement_timeout_s`, which only a direct session can carry)."""
    return db.create_pool(
        settings.database_session_url if direct else settings.database_url,
        max_size=max_size,
        connect_timeout=settings.db_connect_timeout_s,
        statement_timeout=statement_timeout_s or settings.db_statement_timeout_s,
        behind_pooler=settings.database_behind_pooler and not direct,
    )


async def open_pool(settings: Settings, *, max_size: int = 10) -> asyncpg.Pool:
    """The PostgreSQL pool of a long-running process, waiting for the server to come up."""
    return await retry_transient(
        lambda: create_pool(settings, max_size=max_size),
        what="connecting to PostgreSQL",
        deadline_s=STARTUP_DEADLINE_S,
    )


async def open_amqp(settings: Settings) -> AbstractRobustConnection:
    """The robust RabbitMQ connection (it reconnects by itself once open, and fails over
    to another node of the list when its node is lost)."""
    # A broker that accepts TCP but never answers the handshake (file handles exhausted,
    # a node still booting) must not hang start-up: each attempt on each node of the list
    # has its own deadline, so one dead node cannot use up the others' time.
    return await retry_transient(
        lambda: amqp.connect(settings.amqp_url, attempt_timeout_s=CONNECT_ATTEMPT_S),
        what="connecting to RabbitMQ",
        deadline_s=STARTUP_DEADLINE_S,
    )
