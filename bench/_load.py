"""A small HTTP/1.1 keep-alive load generator on bare asyncio protocols.

aiohttp's client costs more CPU per request than the minimal server it would measure, so
on a 2-core box it would be the bottleneck of `door_ratio`. This one writes pre-built
request bytes and parses only the status line and Content-Length of each answer (the
gateway and the stub both answer with a Content-Length). One request in flight per
connection; closed loop, open loop (latency from the scheduled start, so a slow server
cannot hide its queueing) and burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Build = Callable[[int], tuple[bytes, str]]  # n -> (request bytes, email)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.waiter.set_result(int(head[9:12]))
        if b"connection: close" in head:
            self.closed = True

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


@dataclass
class Sample:
    email: str
    start: float  # perf_counter: scheduled (open loop) or actual send time
    done: float = 0.0
    status: int | str = 0


@dataclass
class Client:
    host: str
    port: int
    samples: list[Sample] = field(default_factory=list)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def send(self, conn: _Connection | None, data: bytes, sample: Sample) -> _Connection:
        """One request; returns the connection to reuse (a new one after a failure)."""
        try:
            if conn is None or conn.closed:
                conn = await self._connect()
            conn.waiter = asyncio.get_running_loop().create_future()
            conn.transport.write(data)
            sample.status = await asyncio.wait_for(conn.waiter, 60)
        except (OSError, TimeoutError) as exc:
            sample.status = type(exc).__name__
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            conn = None
        sample.done = time.perf_counter()
        self.samples.append(sample)
        return conn

    async def closed_loop(
        self,
        build: Build,
        connections: int,
        duration_s: float,
        after: Callable[[Sample], object] | None = None,
    ) -> float:
        """`connections` clients send back to back for `duration_s`; `after(sample)` (a
        coroutine function) runs before a client's next request. Elapsed seconds."""
        counter = iter(range(10**9))
        started = time.perf_counter()
        deadline = started + duration_s

        async def client() -> None:
            conn = None
            while time.perf_counter() < deadline:
                data, email = build(next(counter))
                sample = Sample(email, time.perf_counter())
                conn = await self.send(conn, data, sample)
                if after is not None:
                    await after(sample)
            if conn is not None and conn.transport is not None:
                conn.transport.close()

        await asyncio.gather(*(client() for _ in range(connections)))
        return time.perf_counter() - started

    async def open_loop(self, build: Build, rate: float, duration_s: float) -> None:
        """Arrivals every 1/rate s whatever the answers; idle connections are reused."""
        idle: list[_Connection] = []
        tasks = []
        started = time.perf_counter()

        async def one(n: int, scheduled: float) -> None:
            data, email = build(n)
            conn = idle.pop() if idle else None
            conn = await self.send(conn, data, Sample(email, scheduled))
            if conn is not None:
                idle.append(conn)

        for n in range(int(rate * duration_s)):
            scheduled = started + n / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(one(n, scheduled)))
        await asyncio.gather(*tasks)
        for conn in idle:
            conn.transport.close()

    async def burst(self, build: Build, count: int, connections: int) -> None:
        """`count` requests all due at once, over `connections` connections."""
        started = time.perf_counter()
        counter = iter(range(count))

        async def client() -> None:
            conn = None
            for n in counter:
                data, email = build(n)
                conn = await self.send(conn, data, Sample(email, started))
            if conn is not None and conn.transport is not None:
                conn.transport.close()

        await asyncio.gather(*(client() for _ in range(connections)))
