"""Supervised tasks: transient failures restart with capped, jittered backoff; anything
else stops the process; nothing dies silently (pure asyncio, no services needed)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest
from aiormq.exceptions import AMQPConnectionError

from service.amqp import BrokerUnavailable
from service.errors import PermanentError, RetryableError
from service.supervisor import Supervisor, TaskCrashed, backoff_delay, is_transient, supervise


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.ConnectionDoesNotExistError("gone"),
        asyncpg.InternalClientError("protocol"),
        asyncpg.CannotConnectNowError("starting up"),
        asyncpg.AdminShutdownError("terminating connection"),
        asyncpg.SerializationError("retry"),
        AMQPConnectionError("reset"),
        BrokerUnavailable("no confirm"),
        ConnectionRefusedError(),
        TimeoutError(),
        RetryableError("later"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_lost_connections_in_every_library_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [KeyError("bug"), ValueError("bad"), PermanentError("never"), asyncpg.UniqueViolationError()],
    ids=lambda e: type(e).__name__,
)
def test_bugs_and_permanent_errors_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_backoff_grows_is_capped_and_jittered() -> None:
    delays = [backoff_delay(n, cap=8, base=0.5) for n in range(1, 12)]
    assert all(0 < d <= 8 for d in delays)
    assert delays[0] <= 0.5 and delays[-1] >= 4  # half to all of the capped ceiling
    assert len({backoff_delay(10, cap=8) for _ in range(20)}) > 1  # jittered
    assert backoff_delay(10_000, cap=30) <= 30  # no overflow on long outages


async def test_a_transient_failure_restarts_the_task_and_is_logged(caplog) -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop, backoff_max=0.01)
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise asyncpg.InterfaceError("connection is closed")
        await stop.wait()

    with caplog.at_level(logging.WARNING, logger="service.supervisor"):
        supervisor.start("flaky", flaky)
        for _ in range(100):
            if runs >= 3 and supervisor.health.report() == {"flaky": "ok"}:
                break
            await asyncio.sleep(0.01)
        await supervisor.close()
    assert runs == 3 and supervisor.failure is None
    restarts = [r for r in caplog.records if r.getMessage() == "task failed; restarting"]
    assert len(restarts) == 2 and all(r.exc_info for r in restarts)


async def test_a_bug_stops_the_process_with_its_traceback(caplog) -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop)

    async def healthy() -> None:
        await stop.wait()

    async def buggy() -> None:
        raise KeyError("a bug")

    with caplog.at_level(logging.CRITICAL, logger="service.supervisor"):
        supervisor.start("healthy", healthy)
        supervisor.start("buggy", buggy)
        await asyncio.wait_for(stop.wait(), 2)  # one crash stops everything
        await supervisor.close()
    assert isinstance(supervisor.failure, KeyError)
    assert supervisor.health.report()["buggy"].startswith("crashed")
    crash = [r for r in caplog.records if r.getMessage() == "task crashed; stopping the process"]
    assert crash and crash[0].exc_info[0] is KeyError
    with pytest.raises(TaskCrashed):
        supervisor.raise_if_failed()


async def test_a_task_that_returns_while_running_is_a_failure_not_silence() -> None:
    stop = asyncio.Event()

    async def quits() -> None:
        return None

    with pytest.raises(RuntimeError, match="returned"):
        await supervise("quits", quits, health=Supervisor(stop).health, stop=stop)


async def test_stop_cancels_a_task_that_waits_forever() -> None:
    stop = asyncio.Event()
    supervisor = Supervisor(stop, grace_s=0.1)
    supervisor.start("forever", lambda: asyncio.Event().wait())
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(supervisor.close(), 2)
    assert supervisor.failure is None
