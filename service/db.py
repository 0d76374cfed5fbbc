"""PostgreSQL: the pool every process uses, and the migration runner."""

from __future__ import annotations

import json
import logging
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process that migrates.
MIGRATION_LOCK = 0x52454749  # "REGI"


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection returns to the pool.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: one more round trip per acquire. Pool connections never
    hold session state (LISTEN and the migration lock use connections of their own, and
    nothing SETs a session variable), and an open transaction is still rolled back by
    asyncpg before this runs. Behind a transaction pooler that reset would land on some
    other client's server connection anyway.
    """


class PoolerMisconfigured(RuntimeError):
    """The pooled path would run statements without a server-side statement_timeout."""


async def create_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout: float = 5.0,
    statement_timeout: float = 15.0,
    behind_pooler: bool = False,
) -> asyncpg.Pool:
    """A pool with JSON codecs installed on every connection.

    Bounded waits everywhere: connecting gives up after `connect_timeout`, and the server
    cancels any statement after `statement_timeout` (the client stops waiting a little
    later), so a database outage becomes a quick error (503, retry) instead of a hang.

    `behind_pooler`: `database_url` is a transaction-pooling PgBouncer, where consecutive
    transactions of one client run on different server connections. So no statement cache
    (its named prepared statements live on one server connection; with the cache off
    asyncpg sends every statement unnamed, parsed and executed in one round), and no
    statement_timeout startup parameter (PgBouncer refuses unknown ones, and a session
    setting would not follow the client anyway): the timeout must come from the server's
    own defaults (ALTER ROLE/DATABASE ... SET statement_timeout), checked here.
    """
    if behind_pooler:
        per_connection: dict = {"statement_cache_size": 0}
    else:
        per_connection = {"server_settings": {"statement_timeout": str(_ms(statement_timeout))}}
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        timeout=connect_timeout,
        command_timeout=statement_timeout + 1,
        **per_connection,
    )
    if behind_pooler:
        try:
            await _check_statement_timeout(pool, statement_timeout)
        except BaseException:
            await pool.close()
            raise
    return pool


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


async def _check_statement_timeout(pool: asyncpg.Pool, statement_timeout: float) -> None:
    """Refuse a pooled path on which the server would let a statement run for ever."""
    server_ms = await pool.fetchval(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'"
    )
    if server_ms == 0:
        raise PoolerMisconfigured(
            "statement_timeout is off on the connections PgBouncer hands out; set it on "
            "the database side, e.g. ALTER ROLE <role> SET statement_timeout = "
            f"'{_ms(statement_timeout)}ms' (docs/pgbouncer.md)"
        )
    if server_ms != _ms(statement_timeout):
        log.warning(
            "server-side statement_timeout differs from REGISTRAR_DB_STATEMENT_TIMEOUT_S",
            extra={"server_ms": server_ms, "configured_ms": _ms(statement_timeout)},
        )


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("schemas") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name, f.read_text(encoding="utf-8")) for f in files]


async def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist yet."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        return
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(maintenance)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
                log.info("database created", extra={"database": name})
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass  # another process won the race (PG reports it either way)
    finally:
        await conn.close()


async def migrate(database_url: str) -> list[str]:
    """Apply pending migrations in file-name order; returns the names applied.

    Idempotent and safe from several processes at once: a session advisory lock
    serializes runners, and each file is recorded in the same transaction as its DDL.
    The lock needs a session of its own: `database_url` must be PostgreSQL itself, never
    a transaction pooler (Settings.database_session_url).
    """
    await ensure_database(database_url)
    conn = await asyncpg.connect(database_url)
    applied: list[str] = []
    try:
        # A role or database default meant for the service's statements (the pooled path
        # gets its statement_timeout that way) must not cancel an index build on a big table.
        await conn.execute("SET statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in _migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
            log.info("migration applied", extra={"migration": name})
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        await conn.close()
    return applied
