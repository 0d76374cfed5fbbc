"""The pool behind a real PgBouncer in transaction-pooling mode (docs/pgbouncer.md):
statements work although consecutive transactions land on different server connections,
clients share few server connections, the server-side statement_timeout holds, and a
NOTIFY sent through the pooler reaches a LISTEN on the direct connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service import db
from service.listen import Listener
from service.settings import Settings
from tests.conftest import drop_database, through_pgbouncer

CLIENTS = 20  # asyncpg connections to PgBouncer, more than its default_pool_size (8)


async def own_database(settings: Settings, suffix: str) -> Settings:
    own = settings.model_copy(update={"database_url": f"{settings.database_url}_{suffix}"})
    await db.ensure_database(own.database_url)
    return own


@pytest.fixture(scope="module")
async def pooled(settings: Settings, pgbouncer) -> AsyncIterator[Settings]:
    """A database of its own whose statement_timeout (0.5 s) is its default, reached
    through PgBouncer; `database_session_url` is the direct way."""
    short = settings.model_copy(update={"db_statement_timeout_s": 0.5})
    own = await through_pgbouncer(await own_database(short, "pgbouncer"), pgbouncer)
    yield own
    await drop_database(own.database_session_url)


@pytest.fixture
async def pool(pooled: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(
        pooled.database_url,
        min_size=CLIENTS,
        max_size=CLIENTS,
        statement_timeout=pooled.db_statement_timeout_s,
        behind_pooler=pooled.database_behind_pooler,
    )
    yield pool
    await pool.close()


async def test_clients_share_few_server_connections_statement_by_statement(pool, pooled, pgbouncer):
    async def work(n: int) -> int:
        async with pool.acquire() as conn:
            # The same statements again and again (named prepared statements would be
            # missing on the next server connection), a batch, JSON codecs, SET LOCAL.
            for _ in range(5):
                assert await conn.fetchval("SELECT $1::jsonb", {"n": n}) == {"n": n}
            await conn.executemany("SELECT $1::int", [(i,) for i in range(3)])
            async with conn.transaction():
                await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                await conn.execute("SELECT pg_sleep(0.05)")  # overlap the transactions
                return await conn.fetchval("SELECT pg_backend_pid()")

    backends = await asyncio.gather(*(work(n) for n in range(CLIENTS * 2)))

    database = pooled.database_url.rsplit("/", 1)[1]
    clients = [c for c in pgbouncer.show("CLIENTS") if c["database"] == database]
    servers = [s for s in pgbouncer.show("SERVERS") if s["database"] == database]
    assert len(clients) == CLIENTS
    assert 1 <= len(servers) <= 8 and len(set(backends)) <= 8


async def test_the_database_side_statement_timeout_holds_through_pgbouncer(pool):
    with pytest.raises(asyncpg.QueryCanceledError):
        await pool.execute("SELECT pg_sleep(5)")
    assert await pool.fetchval("SELECT 1") == 1


async def test_a_notify_through_pgbouncer_reaches_the_direct_listen(pool, pooled):
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = Listener(pooled.database_session_url, "pgbouncer_test", heard.put_nowait)
    task = asyncio.create_task(listener.run())
    try:
        assert await asyncio.wait_for(heard.get(), 10) == ""  # listening now
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_notify('pgbouncer_test', 'decided')")
        assert await asyncio.wait_for(heard.get(), 10) == "decided"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_pooled_path_without_a_server_side_statement_timeout_is_refused(
    settings: Settings, pgbouncer
):
    own = await own_database(settings, "pgbouncer_bare")
    try:
        with pytest.raises(db.PoolerMisconfigured, match="ALTER ROLE"):
            await db.create_pool(pgbouncer.url(own.database_url), behind_pooler=True)
    finally:
        await drop_database(own.database_url)
