"""A PostgreSQL LISTEN connection that reopens itself after the server restarts.

Notifications sent while the connection was down are lost, so every (re)connect also
calls `on_notify` once: whoever listens re-checks the table instead of waiting for a
notification that will never come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from service.errors import RetryableError

log = logging.getLogger(__name__)

PING_INTERVAL_S = 15.0
Notify = Callable[[str], None]  # called with the payload


class Listener:
    """LISTEN on one channel; `run()` is a supervised task (see service.supervisor).

    `database_url` must reach PostgreSQL itself (Settings.database_session_url): through a
    transaction pooler the LISTEN would stay behind on a server connection that other
    clients borrow next, and its notifications would never come to us.
    """

    def __init__(
        self, database_url: str, channel: str, on_notify: Notify, *, connect_timeout: float = 5.0
    ) -> None:
        self._database_url = database_url
        self._channel = channel
        self._on_notify = on_notify
        self._connect_timeout = connect_timeout
        self._conn: asyncpg.Connection | None = None

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def status(self) -> str:
        """For /readyz: "ok" while the LISTEN connection is open."""
        return "ok" if self.alive else "disconnected"

    async def run(self) -> None:
        """Listen until cancelled; raise RetryableError when the connection is lost."""
        lost = asyncio.Event()
        conn = await asyncpg.connect(self._database_url, timeout=self._connect_timeout)
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self._channel, self._notified)
            self._conn = conn
            log.info("listening", extra={"channel": self._channel})
            self._on_notify("")  # anything announced while we were away
            while not lost.is_set():
                # A half-open TCP connection never reports its end: ask now and then.
                try:
                    await asyncio.wait_for(lost.wait(), timeout=PING_INTERVAL_S)
                except TimeoutError:
                    await conn.fetchval("SELECT 1", timeout=self._connect_timeout)
            raise RetryableError(f"LISTEN connection for {self._channel!r} lost")
        finally:
            self._conn = None
            if not conn.is_closed():
                await conn.close(timeout=2)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)
