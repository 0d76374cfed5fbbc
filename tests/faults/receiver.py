"""A webhook receiver in a process of its own: where the webhooks worker delivers during
webhook_receiver_outage. It verifies every request with the `standardwebhooks` package
(the secret comes in the environment, FAULTS_WEBHOOK_SECRET) and appends one JSON line
per request — webhook-id, type, data.email, verified — flushed before it answers (204 if
the signature verified, else 400). A request recorded but never answered (killed in
between) counts as seen, as it would in a real receiver's database.

    FAULTS_WEBHOOK_SECRET=whsec_... python -m tests.faults.receiver PORT FILE
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path
from typing import IO

import aiohttp
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.faults.child import ChildServer, json_lines, serve_from_argv

SECRET_ENV = "FAULTS_WEBHOOK_SECRET"
PATH = "/webhooks"


def app(secret: str, out: IO[str]) -> web.Application:
    verifier = Webhook(secret)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = verifier.verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            event, verified = json.loads(body or b"{}"), False
        line = {
            "id": request.headers.get("webhook-id"),
            "type": event.get("type"),
            "email": str(event.get("data", {}).get("email", "")).lower(),
            "verified": verified,
        }
        out.write(json.dumps(line) + "\n")
        out.flush()
        return web.Response(status=204 if verified else 400)

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    application = web.Application()
    application.router.add_post(PATH, receive)
    application.router.add_get("/healthz", health)
    return application


async def serve(port: int, path: Path) -> None:
    with path.open("a") as out:
        runner = web.AppRunner(app(os.environ[SECRET_ENV], out), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
        await asyncio.Event().wait()


class Receiver(ChildServer):
    """Controls the receiver process from the harness: start, stop, start again, count."""

    module = "tests.faults.receiver"
    what = "webhook receiver"

    def __init__(self, port: int, record: Path, log: Path, secret: str) -> None:
        super().__init__(
            port, log, [str(port), str(record)], env={**os.environ, SECRET_ENV: secret}
        )
        self.record = record
        record.touch()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def ready(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                http.get(f"http://127.0.0.1:{self.port}/healthz") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def received(self) -> list[dict]:
        return json_lines(self.record)

    def counts(self) -> Counter[tuple[str, str]]:
        """Verified deliveries per (CloudEvents type, address)."""
        return Counter((r["type"], r["email"]) for r in self.received() if r["verified"])

    def unverified(self) -> int:
        return sum(1 for r in self.received() if not r["verified"])


if __name__ == "__main__":
    serve_from_argv(serve)
