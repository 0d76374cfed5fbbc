"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that checks every
request's signature with the `standardwebhooks` package (the reference implementation,
not ours), records it, and answers as the test scripts each path.

    receiver = Receiver()
    await receiver.start()
    receiver.secrets["/a"] = secret          # from `webhook add` / POST /api/v1/webhooks
    receiver.answers["/a"] = 500             # or 204 (default), or an async callable
    await receiver.wait_for(lambda r: len(r.delivered("/a")) == 3)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import free_port

Answer = int | Callable[[], Awaitable[int]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int  # what the receiver answered
    at: float  # time.monotonic()

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


def verify(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    """Standard Webhooks verification (signature, id, timestamp within five minutes)."""
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


def hang(seconds: float = 60.0) -> Callable[[], Awaitable[int]]:
    """An answer that never comes in time (the client gives up first)."""

    async def answer() -> int:
        await asyncio.sleep(seconds)
        return 204

    return answer


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.secrets: dict[str, str] = {}
        self.answers: dict[str, Answer] = {}
        self.received: list[Received] = []
        self.arrivals: list[tuple[str, float]] = []  # (path, time.monotonic()) on arrival
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.arrivals.append((request.path, time.monotonic()))
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        secret = self.secrets.get(request.path)
        verified = secret is not None and verify(secret, body, headers)
        answer = self.answers.get(request.path, 204)
        status = answer if isinstance(answer, int) else await answer()
        if not verified and 200 <= status < 300:
            status = 400  # a receiver refuses what it cannot verify
        self.received.append(
            Received(request.path, headers, body, verified, status, time.monotonic())
        )
        return web.Response(status=status)

    def arrived(self, path: str) -> int:
        """Requests that reached `path`, answered or not (yet)."""
        return sum(1 for arrived_at, _ in self.arrivals if arrived_at == path)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def delivered(self, path: str) -> list[Received]:
        """Verified requests the receiver answered with a 2xx: the deliveries."""
        return [r for r in self.at(path) if r.verified and 200 <= r.status < 300]

    async def wait_for(self, condition: Callable[[Receiver], bool], *, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met in {timeout}s")
            await asyncio.sleep(0.05)
