"""Waiting for a worker's decision without busy polling.

Workers `pg_notify('registrar_decided', <id>)` in the transaction that decides a request;
the gateway LISTENs once (service.listen, reopened after a database restart) and wakes
the waiters for that id. A slow poll remains as the safety net, so a lost notification
costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

CHANNEL = "registrar_decided"
POLL_INTERVAL_S = 1.0
T = TypeVar("T")
log = logging.getLogger(__name__)


class OutcomeWaiter:
    """Wakes coroutines waiting on an id when a worker announces a decision about it."""

    def __init__(self, *, limit: int | None = None) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._count = 0
        self._limit = limit

    def notify(self, payload: str) -> None:
        """A decision about `payload` was announced; "" (the LISTEN connection was just
        opened, announcements may have been missed) wakes every waiter to re-check."""
        if payload:
            events = self._waiters.get(payload, ())
        else:
            events = {event for waiting in self._waiters.values() for event in waiting}
        for event in events:
            event.set()

    @property
    def waiting(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._limit is not None and self._count >= self._limit

    async def wait_for(
        self, key: str, check: Callable[[], Awaitable[T | None]], *, timeout: float
    ) -> T | None:
        """Return `check()`'s first non-None result, or None once `timeout` has passed.

        None at once, without checking, when `limit` callers are waiting already (the
        caller answers "pending"). `check` should take a pool connection only for its own
        queries: between checks a waiter holds nothing but an Event, so the number of
        waiters is bounded by `limit`, not by the pool size.
        """
        if self.full:
            return None
        deadline = time.monotonic() + timeout
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        self._count += 1
        try:
            while True:
                event.clear()  # before checking, so a notify during the check is kept
                result = await check()
                remaining = deadline - time.monotonic()
                if result is not None or remaining <= 0:
                    return result
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, POLL_INTERVAL_S))
        finally:
            self._count -= 1
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]


async def announce(conn: asyncpg.Connection, key: str) -> None:
    """Wake gateway waiters on `key` when the current transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, key)
