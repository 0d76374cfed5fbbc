"""Supervised long-running tasks: a transient failure restarts the task after a capped,
jittered backoff; anything else ends the process. No task dies silently.

Which exceptions are transient is decided in one place (`is_transient`), for every library
whose connection can drop: asyncpg, aio-pika/aiormq, sockets, timeouts. The same rule
decides a worker message's fate (retry later) and the gateway's answer (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aio_pika.exceptions import AMQPConnectionError, ChannelInvalidStateError
from aiormq.exceptions import AMQPConnectionError as AiormqConnectionError
from aiormq.exceptions import ChannelInvalidStateError as AiormqChannelInvalidState

from service import metrics
from service.amqp import BrokerUnavailable
from service.errors import RetryableError

log = logging.getLogger(__name__)

# A run that lasted this long was healthy: the next failure starts the backoff afresh.
HEALTHY_RUN_S = 60.0
BACKOFF_BASE_S = 0.5

TRANSIENT: tuple[type[BaseException], ...] = (
    RetryableError,
    BrokerUnavailable,  # no confirm: the broker is down, slow or full
    # asyncpg: lost or refused connections, a server shutting down or starting up, a
    # statement cancelled by our own timeout, a transaction the server rolled back.
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing", ...
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.TooManyConnectionsError,
    # RabbitMQ: the connection or channel went away under us.
    AMQPConnectionError,
    AiormqConnectionError,
    ChannelInvalidStateError,
    AiormqChannelInvalidState,
    ConnectionError,
    OSError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """True for failures that a later attempt can overcome (a dependency was away)."""
    return isinstance(exc, TRANSIENT)


def backoff_delay(attempt: int, *, cap: float, base: float = BACKOFF_BASE_S) -> float:
    """Capped exponential backoff with "equal jitter": between half and all of
    min(cap, base * 2**(attempt-1)), so restarts of many processes spread out but never
    come back at once."""
    ceiling = min(cap, base * 2 ** min(max(attempt - 1, 0), 32))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - not for secrets


class Health:
    """What this process's essential tasks report; `/readyz` shows it."""

    def __init__(self) -> None:
        self._state: dict[str, str] = {}
        self._probes: dict[str, Callable[[], str]] = {}

    def up(self, name: str) -> None:
        self._state[name] = "ok"
        metrics.TASK_UP.labels(name).set(1)

    def down(self, name: str, reason: str) -> None:
        self._state[name] = reason[:200]
        metrics.TASK_UP.labels(name).set(0)

    def probe(self, name: str, check: Callable[[], str]) -> None:
        """A check asked at report time ("ok" or why not), e.g. "consumer attached"."""
        self._probes[name] = check

    def report(self) -> dict[str, str]:
        report = dict(self._state)
        for name, check in self._probes.items():
            try:
                report[name] = check()
            except Exception as exc:  # a failing probe is a "not ready", never a crash
                report[name] = type(exc).__name__
        return report

    @property
    def ready(self) -> bool:
        return all(value == "ok" for value in self.report().values())


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake up at once when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class TaskCrashed(RuntimeError):
    """A supervised task failed for a reason other than a lost dependency (its traceback
    is in the log). The process root turns it into a non-zero exit status."""


class Supervisor:
    """Owns one process's supervised tasks: starts them, reports their health, stops
    them, and remembers the first fatal error, after which the process must exit non-zero.

    Not an asyncio.TaskGroup because tasks start from more than one place (the worker
    root, and the gateway's aiohttp cleanup_ctx); the rule is the same: a crash of one
    stops them all, and nothing outlives `close()`.
    """

    def __init__(
        self, stop: asyncio.Event, *, backoff_max: float = 30.0, grace_s: float = 10.0
    ) -> None:
        self.stop = stop
        self.grace_s = grace_s
        self.health = Health()
        self.failure: BaseException | None = None
        self._backoff_max = backoff_max
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self, name: str, run: Callable[[], Awaitable[None]], *, grace_s: float | None = None
    ) -> asyncio.Task[None]:
        """Run `run` supervised (see `supervise`) until the process stops; after `stop`
        it has `grace_s` (default: the supervisor's) to finish by itself."""
        task = asyncio.create_task(self._guard(name, run, grace_s), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(
        self, name: str, run: Callable[[], Awaitable[None]], grace_s: float | None
    ) -> None:
        try:
            await supervise(
                name,
                run,
                health=self.health,
                stop=self.stop,
                backoff_max=self._backoff_max,
                grace_s=self.grace_s if grace_s is None else grace_s,
            )
        except Exception as exc:
            if self.failure is None:
                self.failure = exc
            self.stop.set()  # one crashed task stops the process

    async def cancel(self, task: asyncio.Task[None], *, grace_s: float | None = None) -> None:
        """Give a task `grace_s` to notice `stop` and finish, then cancel it."""
        await _finish(task, self.grace_s if grace_s is None else grace_s)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        """Stop every task (after setting `stop`) and wait for them."""
        self.stop.set()
        for task in list(self._tasks):
            await self.cancel(task)

    def raise_if_failed(self) -> None:
        """After shutdown: exit non-zero if a task crashed (its traceback is logged)."""
        if self.failure is not None:
            raise TaskCrashed(f"stopped because a task crashed: {self.failure!r}")


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    health: Health,
    stop: asyncio.Event,
    backoff_max: float = 30.0,
    grace_s: float = 10.0,
) -> None:
    """Run `run()` until `stop` is set (then it has `grace_s` to return by itself).

    A transient error is logged with its traceback, the task is reported down, and it is
    restarted after a backoff. Any other exception is logged as critical and re-raised,
    which ends the process (the composition root exits non-zero). Returning while the
    process should still be running counts as such a failure.
    """
    attempt = 0
    while not stop.is_set():
        started = time.monotonic()
        health.up(name)
        try:
            await _until_stopped(run, stop, grace_s=grace_s)
        except Exception as exc:
            if not is_transient(exc):
                health.down(name, f"crashed: {type(exc).__name__}")
                log.critical(
                    "task crashed; stopping the process", exc_info=True, extra={"task": name}
                )
                raise
            if time.monotonic() - started > HEALTHY_RUN_S:
                attempt = 0
            attempt += 1
            delay = backoff_delay(attempt, cap=backoff_max)
            health.down(name, f"restarting: {type(exc).__name__}")
            metrics.TASK_RESTARTS.labels(name).inc()
            log.warning(
                "task failed; restarting",
                exc_info=True,
                extra={"task": name, "attempt": attempt, "delay_s": round(delay, 2)},
            )
            await sleep_unless(stop, delay)
            continue
        if not stop.is_set():
            health.down(name, "returned")
            raise RuntimeError(f"task {name!r} returned while the process was running")
    health.down(name, "stopped")


async def _until_stopped(
    run: Callable[[], Awaitable[None]], stop: asyncio.Event, *, grace_s: float = 10.0
) -> None:
    """Await `run()`; once `stop` is set, give it `grace_s` to return by itself (a relay
    finishing its batch), then cancel it (a listener waiting forever)."""
    work = asyncio.ensure_future(run())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if await _finish(work, grace_s):
            return
        work.result()  # raises what run() raised
    finally:
        stopped.cancel()
        if not work.done():
            work.cancel()


async def _finish(task: asyncio.Future[None], grace_s: float) -> bool:
    """Wait up to `grace_s` for `task` to end by itself, else cancel it and wait for the
    cancellation; True if it had to be cancelled."""
    if not task.done():
        await asyncio.wait({task}, timeout=grace_s)
    if task.done():
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


async def retry_transient(
    operation: Callable[[], Awaitable[object]],
    *,
    what: str,
    deadline_s: float,
    backoff_max: float = 5.0,
) -> object:
    """Call `operation` until it succeeds, retrying transient errors until `deadline_s`
    has passed (then the last error is raised). For start-up connections and for the
    commit that must follow a side effect already done."""
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            attempt += 1
            delay = backoff_delay(attempt, cap=backoff_max)
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "%s failed; retrying", what, extra={"error": f"{type(exc).__name__}: {exc}"[:300]}
            )
            await asyncio.sleep(delay)
