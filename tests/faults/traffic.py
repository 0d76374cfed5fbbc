"""The steady stream of clients: registrations and invitations at fixed rates.

Each request is an independent client (open loop: a slow or failing service does not slow
the arrivals down) with a unique address and an Idempotency-Key. A client whose request
fails in a way a real client would retry (connection error, timeout, 5xx, 429) retries
with the same key and the same body bytes after a short pause, until accepted or until
its deadline. Only accepted items are audited: nothing promised the others anything.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from tests.faults.common import progress

PASSWORD = "fault tolerant password"
ACTIVATION_URL = "https://app.example.com/activate?t={activationToken}"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)


@dataclass(frozen=True)
class Plan:
    """How much traffic, for how long, and how patient each client is."""

    register_rate: float = 10.0
    invite_rate: float = 3.0
    duration_s: float = 30.0
    client_deadline_s: float = 60.0


@dataclass
class Item:
    """One client's request and what became of it."""

    kind: str  # "register" or "invite"
    email: str
    key: str
    url: str
    body: bytes
    headers: dict[str, str]
    accepted: bool = False
    attempts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    harness_error: str | None = None

    def describe(self) -> str:
        tried = ", ".join(f"{outcome} x{n}" for outcome, n in self.outcomes.items())
        return f"{self.kind} {self.email} key={self.key} attempts={self.attempts} ({tried})"


class Client:
    """Builds the requests of one scenario and sends them like a patient client."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, *, api_key: str, token: str):
        self.http = http
        self.base_url = base_url
        self.api_key = api_key
        self.token = token

    def registration(self, tag: str, n: int) -> Item:
        user_name = f"{tag}.r{n}"
        body = {
            "activationUrl": ACTIVATION_URL,
            "challengeIdentifier": "x",
            "challengeResponse": "x",
            "confirmPassword": PASSWORD,
            "email": f"{user_name}@example.com",
            "password": PASSWORD,
            "userName": user_name,
        }
        return self._item(
            "register",
            f"{self.base_url}/{self.api_key}/register",
            body,
            {
                "Prefer": "respond-async",
            },
        )

    def invitation(self, tag: str, n: int) -> Item:
        body = {"email": f"{tag}.i{n}@example.com", "locale": "en_US"}
        return self._item(
            "invite",
            f"{self.base_url}/api/v1/organization/users/register",
            body,
            {"Authorization": f"Bearer {self.token}"},
        )

    def _item(self, kind: str, url: str, body: dict, headers: dict[str, str]) -> Item:
        key = str(uuid.uuid4())
        return Item(
            kind=kind,
            email=body["email"],
            key=key,
            url=url,
            body=json.dumps(body).encode(),
            headers={**headers, "Content-Type": "application/json", "Idempotency-Key": key},
        )

    async def submit(self, item: Item, deadline_s: float) -> None:
        """Send until accepted, a non-retryable answer, or the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        accepted = {200, 202} if item.kind == "register" else {204}
        while True:
            item.attempts += 1
            status, text = await self._post(item)
            item.outcomes[str(status) if isinstance(status, int) else status] += 1
            if status in accepted:
                item.accepted = True
                return
            if isinstance(status, int) and 400 <= status < 500 and status != 429:
                item.harness_error = f"HTTP {status}: {text[:300]}"
                return
            pause = min(2.0, 0.25 * 2 ** min(item.attempts, 4)) * random.uniform(0.5, 1.0)
            if loop.time() + pause > deadline:
                return
            await asyncio.sleep(pause)

    async def _post(self, item: Item) -> tuple[int | str, str]:
        """(status, body text), or (exception name, "") when no answer came."""
        try:
            async with self.http.post(
                item.url, data=item.body, headers=item.headers, timeout=REQUEST_TIMEOUT
            ) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__, ""


def schedule(plan: Plan) -> list[tuple[float, str, int]]:
    """(offset in seconds, kind, n) for every request, evenly spaced per kind."""
    arrivals = [
        (n / rate, kind, n)
        for kind, rate in (("register", plan.register_rate), ("invite", plan.invite_rate))
        if rate > 0
        for n in range(round(rate * plan.duration_s))
    ]
    return sorted(arrivals)


async def stream(client: Client, plan: Plan, tag: str) -> list[Item]:
    """Start every client at its time; return once each is accepted or has given up."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    items: list[Item] = []
    tasks: list[asyncio.Task] = []
    reporter = asyncio.create_task(_report(items, started))
    try:
        for offset, kind, n in schedule(plan):
            await asyncio.sleep(max(0.0, started + offset - loop.time()))
            item = client.registration(tag, n) if kind == "register" else client.invitation(tag, n)
            items.append(item)
            tasks.append(asyncio.create_task(client.submit(item, plan.client_deadline_s)))
        await asyncio.gather(*tasks)
    finally:
        reporter.cancel()
        for task in tasks:
            task.cancel()
    return items


async def _report(items: list[Item], started: float) -> None:
    """Every 5 s: how many were sent, accepted, and needed more than one attempt."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(5)
        accepted = sum(item.accepted for item in items)
        retried = sum(item.attempts > 1 for item in items)
        progress(
            f"  t={loop.time() - started:.0f}s sent={len(items)} accepted={accepted} "
            f"retried={retried}"
        )
