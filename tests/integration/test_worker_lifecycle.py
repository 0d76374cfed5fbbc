"""The worker process's composition root: everything it opened is closed, also when
start-up fails half-way, and a crashed task ends the process instead of dying silently."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from cli.workers import run_workers
from service.settings import Settings
from service.supervisor import TaskCrashed
from workers import outbox


async def _connections(pool: asyncpg.Pool) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    )


async def test_a_start_up_failing_half_way_leaks_nothing(settings: Settings, pool) -> None:
    before = await _connections(pool)
    # The pool and the broker connection open first; the SMTP URL is refused after them.
    broken = settings.model_copy(update={"smtp_url": "ftp://mail.example"})
    with pytest.raises(ValueError, match="SMTP URL"):
        await run_workers(broken, ["registration", "mailer"], asyncio.Event())
    await asyncio.sleep(0.2)  # the server notices closed connections asynchronously
    assert await _connections(pool) == before


async def test_a_crashed_task_stops_the_workers_with_an_error(
    settings: Settings, pool, monkeypatch
) -> None:
    async def crashing_relay(*_args, **_kwargs) -> None:
        raise KeyError("a bug in the relay")

    monkeypatch.setattr(outbox, "relay", crashing_relay)
    before = await _connections(pool)
    with pytest.raises(TaskCrashed, match="KeyError"):
        await asyncio.wait_for(run_workers(settings, ["outbox"], asyncio.Event()), 20)
    await asyncio.sleep(0.2)
    assert await _connections(pool) == before
