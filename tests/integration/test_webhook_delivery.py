"""Webhook delivery against the real PostgreSQL and a real HTTP receiver that verifies
every signature with `standardwebhooks`: the fan-out trigger, claims and leases (two
dispatchers, an expired lease), per-endpoint isolation (a hanging receiver delays nobody
else), retries, 410, parking and replay, redirects, destinations refused at delivery."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from prometheus_client import REGISTRY

from schemas.events import PUBLIC_EVENTS, EmailRequested, EventData, UserActivated
from service import webhooks
from service.outbox import add_event
from service.settings import Settings
from service.tenants import Tenant
from tests.integration.conftest import MakeTenant
from tests.webhook_receiver import Receiver, hang
from workers import webhooks as worker
from workers.webhooks import DeliverySettings, Dispatcher

FAST = DeliverySettings(
    timeout_s=2.0,
    retry_for_s=60.0,
    retry_base_s=0.05,
    retry_max_delay_s=0.2,
    lease_s=12.0,
    concurrency=16,
    endpoint_concurrency=2,
    allow_private=True,
    poll_s=0.1,
    drain_s=1.0,
)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


@pytest.fixture
async def endpoints(pool: asyncpg.Pool) -> AsyncIterator[list[uuid.UUID]]:
    """Ids of the endpoints a test made; removed afterwards, so that no later test's
    dispatcher keeps retrying them."""
    made: list[uuid.UUID] = []
    yield made
    await pool.execute("DELETE FROM webhook_endpoints WHERE id = ANY($1::uuid[])", made)


AddEndpoint = Callable[..., Awaitable[webhooks.Endpoint]]


@pytest.fixture
def add_endpoint(pool, settings: Settings, receiver: Receiver, endpoints) -> AddEndpoint:
    """An endpoint of `tenant` at `receiver.url(path)`; the receiver knows its secret."""

    async def add(tenant: Tenant, path: str, *, events: list[str] | None = None, url=None):
        endpoint, secret = await webhooks.create_endpoint(
            pool,
            tenant_id=tenant.id,
            url=url or receiver.url(path),
            events=events,
            public_key=settings.seal_public_key,
            allow_private=True,
            max_per_tenant=50,
        )
        receiver.secrets[path] = secret
        endpoints.append(endpoint.id)
        return endpoint

    return add


async def emit(pool: asyncpg.Pool, *events: EventData) -> list[uuid.UUID]:
    """Record events as a worker does (outbox, one transaction); their ids."""
    async with pool.acquire() as conn, conn.transaction():
        return [await add_event(conn, event) for event in events]


def activated(tenant: Tenant) -> UserActivated:
    return UserActivated(
        user_id=uuid.uuid4(), tenant_id=tenant.id, activated_at=dt.datetime.now(dt.UTC)
    )


@pytest.fixture
async def run_dispatcher(pool: asyncpg.Pool, settings: Settings, private_key: str):
    """Start dispatchers (each as `registrar worker webhooks` runs one); stopped after."""
    running: list[tuple[asyncio.Event, asyncio.Task, Dispatcher, object]] = []

    async def start(config: DeliverySettings = FAST) -> Dispatcher:
        session = worker.open_session(config)
        dispatcher = Dispatcher(pool, session, config, private_key=private_key)
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(dispatcher.run(stop)), dispatcher, session))
        return dispatcher

    yield start
    for stop, task, dispatcher, session in running:
        stop.set()
        await asyncio.wait_for(task, 15)
        await dispatcher.close()
        await session.close()


async def delivery_rows(pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id", endpoint_id
    )


async def wait_rows(pool, endpoint_id, condition, *, timeout: float = 20) -> list:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = await delivery_rows(pool, endpoint_id)
        if condition(rows):
            return rows
        if loop.time() > deadline:
            raise AssertionError(f"delivery rows: {[dict(r) for r in rows]}")
        await asyncio.sleep(0.05)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# --- the fan-out --------------------------------------------------------------------------


async def test_each_public_event_fans_out_to_the_tenants_matching_endpoints_in_its_transaction(
    pool, tenant, make_tenant, add_endpoint
) -> None:
    other = await make_tenant()
    every = await add_endpoint(tenant, "/every")
    registered_only = await add_endpoint(tenant, "/registered", events=["user.registered"])
    activated_only = await add_endpoint(
        tenant, "/activated", events=["registrar.user.activated.v1"]
    )
    disabled = await add_endpoint(tenant, "/disabled")
    await pool.execute(
        "UPDATE webhook_endpoints SET disabled_at = now() WHERE id = $1", disabled.id
    )
    elsewhere = await add_endpoint(other, "/other")

    [event_id] = await emit(pool, activated(tenant))
    command = EmailRequested(email_id=uuid.uuid4(), tenant_id=tenant.id)
    await emit(pool, command)  # a command is never delivered
    with pytest.raises(RuntimeError):  # an event whose transaction rolls back: nothing
        async with pool.acquire() as conn, conn.transaction():
            await add_event(conn, activated(tenant))
            raise RuntimeError

    rows = await pool.fetch(
        "SELECT endpoint_id, event_id, routing_key, status FROM webhook_deliveries "
        "WHERE endpoint_id = ANY($1::uuid[])",
        [e.id for e in (every, registered_only, activated_only, disabled, elsewhere)],
    )
    assert sorted((r["endpoint_id"], r["event_id"], r["routing_key"]) for r in rows) == sorted(
        [(every.id, event_id, "user.activated"), (activated_only.id, event_id, "user.activated")]
    )
    assert {r["status"] for r in rows} == {"pending"}
    assert registered_only.events == ("user.registered",)
    assert activated_only.events == ("user.activated",)


async def test_every_public_event_is_deliverable_and_no_command_is(pool) -> None:
    await worker.register_event_types(pool)
    listed = {r["routing_key"] for r in await pool.fetch("SELECT * FROM webhook_event_types")}
    assert listed == set(PUBLIC_EVENTS)
    with pytest.raises(webhooks.WebhookError):
        webhooks.event_filter(["email.requested"])


# --- delivery, signatures, claims ---------------------------------------------------------


async def test_every_event_arrives_once_as_its_cloudevent_signed_per_standard_webhooks(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    endpoint = await add_endpoint(tenant, "/hook")
    event_ids = await emit(pool, *(activated(tenant) for _ in range(12)))
    await run_dispatcher()

    await receiver.wait_for(lambda r: len(r.delivered("/hook")) >= 12)
    got = receiver.at("/hook")
    assert all(r.verified for r in got)  # standardwebhooks.Webhook(secret).verify(...)
    assert sorted(r.webhook_id for r in got) == sorted(str(i) for i in event_ids)
    first = got[0]
    assert first.headers["content-type"] == "application/cloudevents+json"
    assert first.headers["webhook-signature"].startswith("v1,")
    assert first.event["id"] == first.webhook_id
    assert first.event["type"] == "registrar.user.activated.v1"
    assert first.event["data"]["tenantId"] == str(tenant.id)
    rows = await wait_rows(
        pool, endpoint.id, lambda rows: all(r["status"] == "delivered" for r in rows)
    )
    assert {(r["attempts"], r["last_status"], r["lease_until"]) for r in rows} == {(1, 204, None)}


async def test_two_dispatchers_never_deliver_one_delivery_twice(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    endpoint = await add_endpoint(tenant, "/twice")
    config = dataclasses.replace(FAST, endpoint_concurrency=8)
    await run_dispatcher(config)
    await run_dispatcher(config)
    event_ids = []
    for _ in range(6):  # arriving while both claim
        event_ids += await emit(pool, *(activated(tenant) for _ in range(10)))
        await asyncio.sleep(0.05)

    await wait_rows(
        pool,
        endpoint.id,
        lambda rows: len(rows) == 60 and all(r["status"] == "delivered" for r in rows),
    )
    await asyncio.sleep(0.3)
    seen = Counter(r.webhook_id for r in receiver.at("/twice"))
    assert set(seen) == {str(i) for i in event_ids}
    assert set(seen.values()) == {1}


async def test_a_delivery_whose_claim_expired_is_taken_over_and_counted(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    endpoint = await add_endpoint(tenant, "/takeover")
    [event_id] = await emit(pool, activated(tenant))
    # A dispatcher claimed it and died mid-request: its lease runs out after 0.2 s.
    [held] = await worker.claim(pool, limit=1, settings=dataclasses.replace(FAST, lease_s=0.2))
    assert held.event_id == event_id and held.attempts == 1 and not held.took_over
    before = sample("registrar_webhook_lease_takeovers_total")
    await run_dispatcher()

    await receiver.wait_for(lambda r: len(r.delivered("/takeover")) == 1)
    [row] = await wait_rows(pool, endpoint.id, lambda rows: rows[0]["status"] == "delivered")
    assert row["attempts"] == 2
    assert sample("registrar_webhook_lease_takeovers_total") == before + 1


# --- isolation ------------------------------------------------------------------------------


async def test_a_hanging_endpoint_delays_no_other_endpoint(
    pool, make_tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    slow_tenant, fast_tenant = await make_tenant(), await make_tenant()
    await add_endpoint(slow_tenant, "/hangs")
    await add_endpoint(fast_tenant, "/answers")
    receiver.answers["/hangs"] = hang(30)
    # The hanging endpoint's events come first, and outnumber the process's slots.
    await emit(pool, *(activated(slow_tenant) for _ in range(30)))
    await run_dispatcher(dataclasses.replace(FAST, timeout_s=5.0, concurrency=6))
    await receiver.wait_for(lambda r: r.arrived("/hangs") >= 1, timeout=5)
    started = asyncio.get_running_loop().time()
    await emit(pool, *(activated(fast_tenant) for _ in range(10)))

    await receiver.wait_for(lambda r: len(r.delivered("/answers")) == 10, timeout=3)
    took = asyncio.get_running_loop().time() - started
    assert took < 2.0, f"the answering endpoint waited {took:.1f}s behind the hanging one"
    # The hanging endpoint holds no more than its share: endpoint_concurrency requests.
    assert receiver.arrived("/hangs") == FAST.endpoint_concurrency
    assert receiver.at("/hangs") == []  # none answered


async def test_one_endpoint_never_has_more_than_its_concurrency_in_flight(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    await add_endpoint(tenant, "/bounded")
    in_flight, most = 0, 0

    async def slow() -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1
        return 204

    receiver.answers["/bounded"] = slow
    await emit(pool, *(activated(tenant) for _ in range(10)))
    await run_dispatcher()  # endpoint_concurrency=2
    await run_dispatcher()  # a second process: the cap holds across both
    await receiver.wait_for(lambda r: len(r.delivered("/bounded")) == 10)
    assert most == FAST.endpoint_concurrency


# --- failures -------------------------------------------------------------------------------


async def test_failures_are_retried_with_growing_delays_until_delivered(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    endpoint = await add_endpoint(tenant, "/flaky")
    answers = iter([500, 503, 204])

    async def flaky() -> int:
        return next(answers)

    receiver.answers["/flaky"] = flaky
    config = dataclasses.replace(FAST, retry_base_s=0.2, retry_max_delay_s=5.0)
    await emit(pool, activated(tenant))
    await run_dispatcher(config)

    [row] = await wait_rows(pool, endpoint.id, lambda rows: rows[0]["status"] == "delivered")
    assert (row["attempts"], row["last_status"], row["last_error"]) == (3, 204, None)
    times = [r.at for r in receiver.at("/flaky")]
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.1 - 0.02  # at least half of base (equal jitter)
    assert second_gap >= 0.2 - 0.02  # at least half of 2 * base
    endpoint_now = await webhooks.get_endpoint(pool, endpoint.id)
    assert (endpoint_now.failures, endpoint_now.last_error) == (0, None)


async def test_a_redirect_is_not_followed(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    endpoint = await add_endpoint(tenant, "/moved")
    receiver.answers["/moved"] = 307  # Location-less here; aiohttp must not follow anyway
    await emit(pool, activated(tenant))
    await run_dispatcher()
    rows = await wait_rows(pool, endpoint.id, lambda rows: rows[0]["attempts"] >= 2)
    assert rows[0]["status"] == "pending" and rows[0]["last_status"] == 307
    assert {r.path for r in receiver.received} == {"/moved"}


async def test_410_disables_the_endpoint_at_once_and_replay_enables_it(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    endpoint = await add_endpoint(tenant, "/gone")
    receiver.answers["/gone"] = 410
    await emit(pool, *(activated(tenant) for _ in range(4)))
    await run_dispatcher(dataclasses.replace(FAST, endpoint_concurrency=1))

    rows = await wait_rows(pool, endpoint.id, lambda rows: rows[0]["status"] == "parked")
    await asyncio.sleep(0.3)  # no further attempt: the endpoint is disabled
    assert len(receiver.at("/gone")) == 1
    assert (rows[0]["attempts"], rows[0]["last_status"]) == (1, 410)
    shown = await webhooks.get_endpoint(pool, endpoint.id)
    assert shown.disabled_at is not None and "410" in shown.disabled_reason
    assert (shown.parked, shown.pending) == (1, 3)
    await emit(pool, activated(tenant))  # a disabled endpoint gets no new deliveries
    assert len(await delivery_rows(pool, endpoint.id)) == 4

    receiver.answers["/gone"] = 204
    assert await webhooks.replay(pool, endpoint.id) == 1  # the parked one; the rest resume
    await receiver.wait_for(lambda r: len(r.delivered("/gone")) == 4)
    await wait_rows(pool, endpoint.id, lambda rows: {r["status"] for r in rows} == {"delivered"})
    shown = await webhooks.get_endpoint(pool, endpoint.id)
    assert shown.disabled_at is None
    assert (shown.to_json()["parked"], shown.to_json()["pending"]) == (0, 0)


async def test_after_the_retry_window_a_delivery_is_parked_and_replay_delivers_it(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    endpoint = await add_endpoint(tenant, "/down")
    receiver.answers["/down"] = 500
    await emit(pool, activated(tenant), activated(tenant))
    await run_dispatcher(dataclasses.replace(FAST, retry_for_s=0.5))

    rows = await wait_rows(
        pool, endpoint.id, lambda rows: all(r["status"] == "parked" for r in rows)
    )
    assert all(r["attempts"] >= 1 and r["parked_at"] is not None for r in rows)
    [listed] = [e for e in await webhooks.list_endpoints(pool, tenant.id) if e.id == endpoint.id]
    assert (listed.parked, listed.pending, listed.failures > 0) == (2, 0, True)
    assert listed.last_error == "HTTP 500"
    parked_at_attempts = len(receiver.at("/down"))
    await asyncio.sleep(0.5)
    assert len(receiver.at("/down")) == parked_at_attempts  # parked: no more attempts

    receiver.answers["/down"] = 204
    assert await webhooks.replay(pool, endpoint.id) == 2
    await receiver.wait_for(lambda r: len(r.delivered("/down")) == 2)
    rows = await wait_rows(
        pool, endpoint.id, lambda rows: all(r["status"] == "delivered" for r in rows)
    )
    assert await webhooks.replay(pool, endpoint.id) == 0
    assert await webhooks.replay(pool, uuid.uuid4()) is None


async def test_a_receiver_back_from_an_outage_gets_its_backlog_at_once(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    """While an endpoint fails it is probed one delivery at a time after growing pauses;
    the first success makes every waiting delivery due again."""
    endpoint = await add_endpoint(tenant, "/outage")
    receiver.answers["/outage"] = 503
    await run_dispatcher(dataclasses.replace(FAST, retry_base_s=0.5, retry_max_delay_s=30.0))
    await emit(pool, *(activated(tenant) for _ in range(8)))
    await wait_rows(
        pool, endpoint.id, lambda rows: sum(r["attempts"] for r in rows) >= 4, timeout=30
    )
    attempts = len(receiver.at("/outage"))
    assert attempts < 8 + 4  # probes, not every delivery again and again

    receiver.answers["/outage"] = 204
    await receiver.wait_for(lambda r: len(r.delivered("/outage")) == 8, timeout=20)
    assert Counter(r.webhook_id for r in receiver.delivered("/outage")).most_common(1)[0][1] == 1


async def test_a_destination_that_is_no_longer_allowed_is_refused_at_delivery(
    pool, tenant, add_endpoint, receiver, run_dispatcher
) -> None:
    """Registered while allowed (or resolving elsewhere): each attempt checks again, and
    nothing is sent to a loopback address."""
    endpoint = await add_endpoint(tenant, "/private", url=receiver.url("/private"))
    await pool.execute(
        "UPDATE webhook_endpoints SET url = $2 WHERE id = $1",
        endpoint.id,
        f"https://127.0.0.1:{receiver.port}/private",
    )
    await emit(pool, activated(tenant))
    await run_dispatcher(dataclasses.replace(FAST, allow_private=False))
    [row] = await wait_rows(pool, endpoint.id, lambda rows: rows[0]["last_error"] is not None)
    assert row["status"] == "pending"
    assert "loopback" in row["last_error"]
    assert receiver.received == []


async def test_removing_an_endpoint_removes_its_deliveries(pool, tenant, add_endpoint) -> None:
    endpoint = await add_endpoint(tenant, "/removed")
    await emit(pool, activated(tenant))
    assert len(await delivery_rows(pool, endpoint.id)) == 1
    assert await webhooks.remove_endpoint(pool, endpoint.id, tenant_id=uuid.uuid4()) is False
    assert await webhooks.remove_endpoint(pool, endpoint.id) is True
    assert await delivery_rows(pool, endpoint.id) == []
    assert await webhooks.remove_endpoint(pool, endpoint.id) is False


async def test_a_tenant_has_at_most_the_configured_number_of_endpoints(
    pool, tenant, settings
) -> None:
    for n in range(2):
        await webhooks.create_endpoint(
            pool, tenant_id=tenant.id, url=f"https://hooks.example.com/{n}", events=None,
            public_key=settings.seal_public_key, allow_private=False, max_per_tenant=2,
        )  # fmt: skip
    with pytest.raises(webhooks.TooManyEndpoints):
        await webhooks.create_endpoint(
            pool, tenant_id=tenant.id, url="https://hooks.example.com/3", events=None,
            public_key=settings.seal_public_key, allow_private=False, max_per_tenant=2,
        )  # fmt: skip
    with pytest.raises(LookupError):
        await webhooks.create_endpoint(
            pool, tenant_id=uuid.uuid4(), url="https://hooks.example.com/", events=None,
            public_key=settings.seal_public_key, allow_private=False, max_per_tenant=2,
        )  # fmt: skip
    stored = await pool.fetch(
        "SELECT sealed_secret FROM webhook_endpoints WHERE tenant_id = $1", tenant.id
    )
    assert all(not row["sealed_secret"].startswith("whsec_") for row in stored)
    await pool.execute("DELETE FROM webhook_endpoints WHERE tenant_id = $1", tenant.id)
