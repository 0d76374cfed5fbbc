"""The gateway in-process (aiohttp test server) on the real PostgreSQL and RabbitMQ:
rate limits and backpressure, which need settings the shared e2e processes do not use."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp.test_utils import TestClient, TestServer

from service import tenants
from service.gateway.app import create_app
from service.ratelimit import parse_networks
from service.settings import Settings
from tests.conftest import drop_topology

BODY = {
    "activationUrl": "https://app.example.com/a/{activationToken}",
    "challengeIdentifier": "-",
    "challengeResponse": "-",
    "password": "long enough password",
    "confirmPassword": "long enough password",
}


def body() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {**BODY, "email": f"{tag}@example.com", "userName": f"u{tag}"}


async def gateway_client(settings: Settings, **overrides) -> TestClient:
    client = TestClient(TestServer(create_app(settings.model_copy(update=overrides))))
    await client.start_server()
    return client


async def test_rate_limit_answers_429_with_retry_after(settings, api_key):
    client = await gateway_client(settings, rate_limit_burst=2, rate_limit_per_minute=1)
    try:
        statuses = []
        for _ in range(3):
            response = await client.post(
                f"/{api_key}/register", json=body(), headers={"Prefer": "respond-async"}
            )
            statuses.append(response.status)
        assert statuses == [202, 202, 429]
        assert int(response.headers["Retry-After"]) >= 1
        assert response.content_type == "application/problem+json"
    finally:
        await client.close()


async def statuses_of(client: TestClient, path: str, forwarded_for: list[str]) -> list[int]:
    answers = []
    for address in forwarded_for:
        response = await client.get(path, headers={"X-Forwarded-For": address})
        answers.append(response.status)
        if response.status == 429:
            assert int(response.headers["Retry-After"]) >= 1
    return answers


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(settings, api_key):
    client = await gateway_client(settings, rate_limit_burst=1, rate_limit_per_minute=1)
    try:
        # The test client's peer (127.0.0.1) is no trusted proxy: a fresh header value
        # per request does not buy a fresh bucket.
        path = f"/{api_key}/captcha/challenge"
        assert await statuses_of(client, path, ["198.51.100.1", "198.51.100.2"]) == [200, 429]
    finally:
        await client.close()


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(settings, api_key):
    client = await gateway_client(
        settings,
        rate_limit_burst=1,
        rate_limit_per_minute=1,
        trusted_proxies=parse_networks("127.0.0.0/8, 10.0.0.0/8"),
    )
    try:
        path = f"/{api_key}/captcha/challenge"
        # Each client has its own bucket; the left-most (client-written) value is not
        # believed once a proxy appended the real one.
        forwarded = ["198.51.100.1", "198.51.100.2", "6.6.6.6, 198.51.100.1, 10.0.0.7"]
        assert await statuses_of(client, path, forwarded) == [200, 200, 429]
    finally:
        await client.close()


async def test_a_tenant_has_a_budget_of_its_own_across_all_its_clients(settings, api_key, pool):
    client = await gateway_client(
        settings,
        tenant_rate_limit_burst=2,
        tenant_rate_limit_per_minute=1,
        trusted_proxies=parse_networks("127.0.0.1"),
    )
    try:
        path = f"/{api_key}/captcha/challenge"
        clients = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        assert await statuses_of(client, path, clients) == [200, 200, 429]
        response = await client.get(path, headers={"X-Forwarded-For": "198.51.100.4"})
        assert response.content_type == "application/problem+json"
        assert "tenant" in (await response.json())["detail"]
        # Another tenant is not held back by the first one's traffic.
        _, other = await tenants.create_tenant(
            pool, name="other", activation_url_prefixes=["https://app.example.com/"]
        )
        assert await statuses_of(client, f"/{other}/captcha/challenge", clients[:1]) == [200]
    finally:
        await client.close()


async def test_full_queue_answers_503_and_leaves_no_pending_request(
    settings, api_key, pool, amqp_connection
):
    prefix = f"{settings.amqp_prefix}_full"
    client = await gateway_client(settings, amqp_prefix=prefix, queue_max_length=1)
    try:
        # Nobody consumes, so the queue fills up. Quorum queues check the limit after
        # enqueueing, so they take one message over it before refusing: allow a few.
        accepted = []
        for _ in range(5):
            key, form = str(uuid.uuid4()), body()
            refused_email = form["email"]
            refused = await client.post(
                f"/{api_key}/register",
                json=form,
                headers={"Prefer": "respond-async", "Idempotency-Key": key},
            )
            if refused.status != 202:
                break
            accepted.append(uuid.UUID(refused.headers["Location"].rsplit("/", 1)[1]))
        assert refused.status == 503
        assert refused.headers["Retry-After"]
        assert (await refused.json())["type"].endswith("/unavailable")
        # Nothing half-done: the refused request was rolled back, so a retry starts clean.
        leftover = await pool.fetchval(
            "SELECT count(*) FROM registration_requests WHERE idempotency_key = $1", key
        )
        assert leftover == 0
        # The commands kept as the relay's safety net: confirmed ones are marked published
        # (their sealed password dropped); the refused one left nothing behind.
        kept = await pool.fetch(
            "SELECT event_id, published_at, body FROM outbox WHERE event_id = ANY($1::uuid[])",
            accepted,
        )
        assert {row["event_id"] for row in kept} == set(accepted)
        assert all(row["published_at"] is not None for row in kept)
        assert all("sealedPassword" not in row["body"]["data"] for row in kept)
        unconfirmed = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL "
            "AND routing_key = 'register.requested' AND body->'data'->>'email' = $1",
            refused_email,
        )
        assert unconfirmed == 0
    finally:
        await client.close()
        await drop_topology(amqp_connection, prefix)


async def test_readyz_reports_both_dependencies_and_the_listener(settings):
    client = await gateway_client(settings)
    try:
        response = await wait_ready(client)
        assert (await response.json())["checks"] == {
            "postgres": "ok",
            "rabbitmq": "ok",
            "outcome-listener": "ok",
            "intake": "ok",
            "tenant-listener": "ok",
        }
    finally:
        await client.close()


async def wait_ready(client: TestClient, timeout: float = 10):
    """/readyz once it answers 200 (the LISTEN connection opens in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await client.get("/readyz")
        if response.status == 200 or asyncio.get_running_loop().time() > deadline:
            assert response.status == 200, await response.text()
            return response
        await asyncio.sleep(0.1)


async def test_unknown_paths_and_methods_are_problem_json_not_500(settings):
    client = await gateway_client(settings)
    try:
        missing = await client.get("/no/such/path/here")
        assert missing.status == 404
        assert missing.content_type == "application/problem+json"
        wrong_method = await client.delete("/healthz")
        assert wrong_method.status == 405
        assert wrong_method.content_type == "application/problem+json"
        assert "GET" in wrong_method.headers["Allow"]
    finally:
        await client.close()
