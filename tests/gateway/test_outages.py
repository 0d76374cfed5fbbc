"""The gateway while PostgreSQL is away or its LISTEN connection is cut: answers 503
(never 500), reports it on /readyz, reconnects, and leaves no request pending forever."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from schemas.events import CloudEvent
from service import commands
from service.gateway.keys import POOL, WAITER
from service.outcomes import CHANNEL
from tests.gateway.test_limits import body, gateway_client, wait_ready

UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:1/registrar_nowhere"


async def _listener_pids(pool: asyncpg.Pool) -> list[int]:
    return [
        row["pid"]
        for row in await pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = $1 AND pid <> pg_backend_pid()",
            f'LISTEN "{CHANNEL}"',
        )
    ]


async def _wait_until(predicate, timeout: float = 15):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_listen_connection_reopens_after_its_backend_is_killed(settings, pool, api_key):
    client = await gateway_client(settings, restart_backoff_max_s=0.5)
    try:
        await wait_ready(client)
        before = await _wait_until(lambda: _listener_pids(pool))
        await pool.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", before)

        async def reconnected() -> list[int]:
            pids = await _listener_pids(pool)
            return pids if pids and set(pids).isdisjoint(before) else []

        await _wait_until(reconnected)
        await wait_ready(client)

        # Decisions announced after the reconnect still wake waiters at once.
        waiter_woken = asyncio.Event()
        waiter = client.server.app[WAITER]
        key = str(uuid.uuid4())

        async def check():
            return True if waiter_woken.is_set() else None

        waiting = asyncio.create_task(waiter.wait_for(key, check, timeout=5))
        await asyncio.sleep(0.1)
        waiter_woken.set()
        await pool.execute("SELECT pg_notify($1, $2)", CHANNEL, key)
        assert await asyncio.wait_for(waiting, 2) is True
    finally:
        await client.close()


async def test_database_outage_answers_503_with_retry_after_not_500(settings, pool, api_key):
    client: TestClient = await gateway_client(settings)
    try:
        await wait_ready(client)
        # Cut the pool's connections and make new ones fail: what a restart looks like.
        app_pool = client.server.app[POOL]
        app_pool._connect_args = (UNREACHABLE_DB,)  # simulate the outage
        app_pool.terminate()
        for path, kwargs in [
            (f"/{api_key}/register", {"json": body(), "headers": {"Prefer": "respond-async"}}),
            (f"/{api_key}/register/requests/{uuid.uuid4()}", {}),
        ]:
            method = client.post if "json" in kwargs else client.get
            response = await method(path, **kwargs)
            assert response.status == 503, await response.text()
            assert response.content_type == "application/problem+json"
            assert int(response.headers["Retry-After"]) >= 1
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["postgres"] != "ok"
    finally:
        await client.close()


async def test_a_recorded_command_is_left_to_the_relay_only_after_its_grace(pool):
    """The gateway's safety net: a command recorded but never confirmed becomes an
    outbox row that the relay takes once the grace period is over; a confirmed one is
    marked published, without its sealed password."""
    event = CloudEvent(type="registrar.register.requested.v1", data={"sealedPassword": "x"})
    async with pool.acquire() as conn, conn.transaction():
        await commands.record_command(conn, "register.requested", event, grace_s=30)
    row = await pool.fetchrow(
        "SELECT available_at > now() + interval '25 seconds' AS later, published_at "
        "FROM outbox WHERE event_id = $1",
        event.id,
    )
    assert row["later"] and row["published_at"] is None

    class Confirming:
        async def publish(self, routing_key, published, **_):
            assert published.id == event.id

    await commands.publish_recorded(pool, Confirming(), "register.requested", event)
    row = await pool.fetchrow("SELECT published_at, body FROM outbox WHERE event_id = $1", event.id)
    assert row["published_at"] is not None
    assert "sealedPassword" not in row["body"]["data"]


async def test_a_failed_request_has_a_final_answer_not_202_forever(settings, pool, api_key):
    client = await gateway_client(settings)
    try:
        accepted = await client.post(
            f"/{api_key}/register", json=body(), headers={"Prefer": "respond-async"}
        )
        assert accepted.status == 202
        location = accepted.headers["Location"]
        request_id = uuid.UUID(location.rsplit("/", 1)[1])
        # What the registration worker's dead-letter hook does.
        await pool.execute(
            "UPDATE registration_requests SET status = 'failed', reason = 'processing_failed' "
            "WHERE id = $1",
            request_id,
        )
        status = await client.get(location)
        assert status.status == 503
        problem = await status.json()
        assert problem["type"].endswith("/registration-failed")
        assert problem["requestId"] == str(request_id)
        assert int(status.headers["Retry-After"]) >= 1
    finally:
        await client.close()
