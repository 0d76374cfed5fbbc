"""The fast door (issue 10) keeps every guarantee of the slow one: requests recorded in
shared statements are recorded exactly as one transaction each would (idempotency,
captcha replay, a refused row does not fail its neighbours), and cached tenants and
tokens stop working the moment their key is rotated or revoked. Real PostgreSQL and
RabbitMQ, the gateway in-process."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest

from service import captcha, tenants
from service.errors import RetryableError
from service.gateway.keys import INTAKE, TENANTS
from service.intake import Intake, PendingRequest
from tests.conftest import solve_pow
from tests.gateway.test_limits import body, gateway_client

ASYNC = {"Prefer": "respond-async"}
PREFIXES = ["https://app.example.com/"]


async def register(client, api_key: str, payload: dict, **headers: str):
    return await client.post(f"/{api_key}/register", json=payload, headers={**ASYNC, **headers})


async def test_concurrent_registrations_share_statements_and_are_all_recorded(
    settings, api_key, pool
):
    client = await gateway_client(settings)
    try:
        payloads = [body() for _ in range(60)]
        answers = await asyncio.gather(*(register(client, api_key, p) for p in payloads))
        assert [a.status for a in answers] == [202] * 60
        ids = [uuid.UUID((await a.json())["requestId"]) for a in answers]
        intake = client.app[INTAKE]
        assert intake.batches < 60  # requests shared statements

        recorded = await pool.fetch(
            "SELECT r.id, r.email, o.body FROM registration_requests r "
            "JOIN outbox o ON o.event_id = r.id WHERE r.id = ANY($1::uuid[])",
            ids,
        )
        assert {r["email"] for r in recorded} == {p["email"] for p in payloads}
        assert all(r["body"]["data"]["requestId"] == str(r["id"]) for r in recorded)

        async def all_marked() -> bool:
            unmarked = await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE event_id = ANY($1::uuid[]) "
                "AND (published_at IS NULL OR body->'data' ? 'sealedPassword')",
                ids,
            )
            return unmarked == 0

        # Confirmed commands are marked published (and their sealed password dropped)
        # by a later statement, so the relay does not send them again.
        for _ in range(50):
            if await all_marked():
                break
            await asyncio.sleep(0.1)
        assert await all_marked()
    finally:
        await client.close()


async def test_one_idempotency_key_sent_many_times_at_once_makes_one_request(
    settings, api_key, pool
):
    client = await gateway_client(settings)
    try:
        payload, key = body(), f"k-{uuid.uuid4()}"
        answers = await asyncio.gather(
            *(register(client, api_key, payload, **{"Idempotency-Key": key}) for _ in range(10))
        )
        assert {a.status for a in answers} == {202}
        assert len({(await a.json())["requestId"] for a in answers}) == 1
        count = await pool.fetchval(
            "SELECT count(*) FROM registration_requests WHERE idempotency_key = $1", key
        )
        assert count == 1
    finally:
        await client.close()


async def test_a_captcha_solution_sent_twice_at_once_is_accepted_once(settings, pool):
    tenant, api_key = await tenants.create_tenant(
        pool, name="pow", captcha="pow", activation_url_prefixes=PREFIXES
    )
    client = await gateway_client(settings)
    try:
        challenge = captcha.new_challenge(tenant, max_number=2000)
        solved = {
            "challengeIdentifier": challenge["challenge"],
            "challengeResponse": solve_pow(challenge),
        }
        answers = await asyncio.gather(
            *(register(client, api_key, {**body(), **solved}) for _ in range(5))
        )
        statuses = sorted(a.status for a in answers)
        assert statuses == [202, 400, 400, 400, 400]
        refused = [await a.json() for a in answers if a.status == 400]
        assert all("already used" in r["detail"] for r in refused)
    finally:
        await client.close()


def pending(tenant_id: uuid.UUID, user_name: str) -> PendingRequest:
    request_id = uuid.uuid4()
    return PendingRequest(
        id=request_id,
        tenant_id=tenant_id,
        idempotency_key=None,
        fingerprint=b"f",
        email=f"{uuid.uuid4().hex[:10]}@example.com",
        user_name=user_name,
        locale="en",
        challenge=None,
        routing_key="register.requested",
        command_json=f'{{"id": "{request_id}", "data": {{}}}}',
    )


async def test_a_row_the_database_refuses_fails_alone(pool):
    tenant, _ = await tenants.create_tenant(pool, name="batch", activation_url_prefixes=PREFIXES)
    intake = Intake(pool, grace_s=30, captcha_validity=dt.timedelta(minutes=10))
    runner = asyncio.create_task(intake.run())
    try:
        good = [pending(tenant.id, f"good{n}") for n in range(5)]
        bad = pending(tenant.id, "bad\x00name")  # PostgreSQL text cannot hold NUL
        results = await asyncio.gather(
            *(intake.record(r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True
        )
        assert isinstance(results[2], asyncpg.PostgresError)
        assert all(r.inserted for i, r in enumerate(results) if i != 2)
        count = await pool.fetchval(
            "SELECT count(*) FROM registration_requests WHERE id = ANY($1::uuid[])",
            [r.id for r in good],
        )
        assert count == 5
    finally:
        runner.cancel()


async def refused_soon(client, api_key: str) -> bool:
    """True once `api_key` gets 401 (within 1 s): the change is announced by a NOTIFY,
    which reaches the gateway a moment after the commit."""
    for _ in range(20):
        if (await register(client, api_key, body())).status == 401:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_rotated_key_and_a_revoked_token_stop_working_at_once(settings, pool):
    tenant, api_key = await tenants.create_tenant(
        pool, name="cache", activation_url_prefixes=PREFIXES
    )
    token_id, token = await tenants.create_access_token(
        pool, tenant_id=tenant.id, scopes=["users:invite"]
    )
    client = await gateway_client(settings)
    try:
        cache = client.app[TENANTS]
        assert (await register(client, api_key, body())).status == 202
        hits = cache.hits
        assert (await register(client, api_key, body())).status == 202
        assert cache.hits == hits + 1  # the second request did not read the table

        new_key = await tenants.rotate_api_key(pool, tenant.id)
        assert await refused_soon(client, api_key)
        assert (await register(client, new_key, body())).status == 202

        invite = {"email": f"{uuid.uuid4().hex[:8]}@example.com"}
        bearer = {"Authorization": f"Bearer {token}"}
        path = "/api/v1/organization/users/register"
        assert (await client.post(path, json=invite, headers=bearer)).status == 204
        await tenants.revoke_access_token(pool, token_id)
        for _ in range(20):
            if (await client.post(path, json=invite, headers=bearer)).status == 401:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a revoked token still works after 1 s")
    finally:
        await client.close()


async def test_while_the_invalidations_cannot_arrive_the_cache_is_not_used(settings, pool):
    tenant, api_key = await tenants.create_tenant(
        pool, name="cache-down", activation_url_prefixes=PREFIXES
    )
    client = await gateway_client(settings)
    try:
        assert (await register(client, api_key, body())).status == 202
        # Cut the gateway's LISTEN connection for tenant changes and rotate the key once
        # that backend is gone: its notification is lost. The cache must not answer from
        # memory meanwhile, nor after the listener is back.
        pids = await pool.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN %registrar_tenants%' AND pid <> pg_backend_pid()"
        )
        assert pids
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", [p["pid"] for p in pids]
        )
        while await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
            [p["pid"] for p in pids],
        ):
            await asyncio.sleep(0.01)
        await tenants.rotate_api_key(pool, tenant.id)
        assert await refused_soon(client, api_key)
    finally:
        await client.close()


async def test_requests_queued_when_the_intake_stops_get_a_retryable_error(pool):
    tenant, _ = await tenants.create_tenant(pool, name="stop", activation_url_prefixes=PREFIXES)
    intake = Intake(pool, grace_s=30, captcha_validity=dt.timedelta(minutes=10))
    runner = asyncio.create_task(intake.run())
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(intake.record(pending(tenant.id, f"q{n}"))) for n in range(3)]
    await asyncio.sleep(0)  # they are queued
    runner.cancel()  # before it took them: they must not wait forever
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
    assert [type(r) for r in results] == [RetryableError] * 3
    with pytest.raises(RetryableError):
        await intake.record(pending(tenant.id, "late"))
