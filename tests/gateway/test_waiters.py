"""Clients waiting for an outcome (no Prefer / `Prefer: wait`) hold no database connection
while they wait, and there are at most REGISTRAR_MAX_WAITERS of them per gateway; beyond
that a POST answers 202 at once, as with `Prefer: respond-async`. No workers run here, so
every outcome stays pending."""

from __future__ import annotations

import asyncio
import time

from service.gateway.keys import POOL, WAITER
from tests.gateway.test_limits import body, gateway_client


async def post(client, api_key: str, **headers: str):
    return await client.post(f"/{api_key}/register", json=body(), headers=headers)


async def until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_with_no_room_for_waiters_a_post_answers_202_at_once(settings, api_key):
    client = await gateway_client(settings, max_waiters=0, register_wait_s=10)
    try:
        started = time.monotonic()
        response = await post(client, api_key)  # default: would wait 10 s
        assert response.status == 202
        assert time.monotonic() - started < 3
        assert (await response.json())["status"] == "pending"
        assert response.headers["Location"].startswith(f"/{api_key}/register/requests/")
    finally:
        await client.close()


async def test_beyond_the_cap_a_post_does_not_wait(settings, api_key):
    client = await gateway_client(settings, max_waiters=1)
    try:
        first = asyncio.create_task(post(client, api_key, Prefer="wait=3"))
        await until(lambda: client.app[WAITER].waiting == 1)
        started = time.monotonic()
        second = await post(client, api_key, Prefer="wait=3")
        assert second.status == 202
        assert time.monotonic() - started < 2
        assert (await first).status == 202  # the first waited its 3 s, then 202
        assert client.app[WAITER].waiting == 0
    finally:
        await client.close()


async def test_waiters_hold_no_pool_connection_while_waiting(settings, api_key):
    client = await gateway_client(settings, max_waiters=100)
    try:
        pool = client.app[POOL]
        waiting = 3 * pool.get_max_size()  # more waiters than connections
        tasks = [
            asyncio.create_task(post(client, api_key, Prefer="wait=4")) for _ in range(waiting)
        ]
        await until(lambda: client.app[WAITER].waiting == waiting)
        # Between their short checks (one query each, at most once a second) the waiters
        # hold no connection: nearly every sample finds the whole pool idle, and another
        # request is answered at once.
        samples = []
        for _ in range(20):
            samples.append(pool.get_size() - pool.get_idle_size())
            await asyncio.sleep(0.05)
        assert samples.count(0) >= 15, samples
        started = time.monotonic()
        status = await client.get(
            f"/{api_key}/register/requests/00000000-0000-0000-0000-000000000000"
        )
        assert status.status == 404
        assert time.monotonic() - started < 1
        assert [r.status for r in await asyncio.gather(*tasks)] == [202] * waiting
    finally:
        await client.close()
