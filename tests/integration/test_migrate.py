"""db.migrate against real PostgreSQL: concurrent runners, idempotent re-runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from service import db
from tests.conftest import POSTGRES_URL

MAINTENANCE_URL = f"{POSTGRES_URL}/postgres"


def migration_names() -> list[str]:
    return [name for name, _sql in db._migration_files()]


@pytest.fixture
async def throwaway_database() -> AsyncIterator[Callable[[], str]]:
    """Hands out URLs of databases that do not exist yet; drops them all afterwards."""
    names: list[str] = []

    def new_url() -> str:
        name = f"registrar_migrate_{uuid.uuid4().hex[:12]}"
        names.append(name)
        return f"{POSTGRES_URL}/{name}"

    yield new_url
    conn = await asyncpg.connect(MAINTENANCE_URL)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def recorded_migrations(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
        return [r["name"] for r in rows]
    finally:
        await conn.close()


async def create_empty_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(MAINTENANCE_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def test_two_concurrent_migrations_of_a_database_that_does_not_exist_both_succeed(
    throwaway_database: Callable[[], str],
) -> None:
    # Three rounds so the race is hit even if one round happens to serialize.
    for _ in range(3):
        url = throwaway_database()
        first, second = await asyncio.gather(db.migrate(url), db.migrate(url))
        assert sorted(first + second) == migration_names()
        assert await recorded_migrations(url) == migration_names()


async def test_two_concurrent_migrations_of_an_empty_database_apply_each_file_once(
    throwaway_database: Callable[[], str],
) -> None:
    url = throwaway_database()
    await create_empty_database(url)

    first, second = await asyncio.gather(db.migrate(url), db.migrate(url))

    # The advisory lock serializes the runners: one applies everything, the other nothing.
    assert sorted([first, second], key=len) == [[], migration_names()]
    assert await recorded_migrations(url) == migration_names()
    conn = await asyncpg.connect(url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await conn.close()
    assert {"tenants", "users", "outbox", "processed_messages", "emails"} <= tables


async def test_migrate_creates_a_missing_database_and_a_second_run_applies_nothing(
    throwaway_database: Callable[[], str],
) -> None:
    url = throwaway_database()

    assert await db.migrate(url) == migration_names()
    assert await db.migrate(url) == []
    assert await recorded_migrations(url) == migration_names()
