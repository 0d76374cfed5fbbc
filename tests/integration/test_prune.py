"""Pruning (service/prune.py): exactly what is past retention goes, nothing else; inside
the retention window deduplication still holds; batches of concurrent pruners do not
collide; every statement is index-driven; the outbox worker prunes periodically.

These tests own a database (and an AMQP prefix): they count every row a prune deletes,
and other tests' rows must not be in the way (nor theirs in ours)."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import generate_latest

from cli.workers import run_workers
from schemas.events import ActivationResendRequested, envelope
from service import db, prune, tenants
from service.settings import Settings
from service.supervisor import Supervisor
from tests.conftest import drop_database, drop_topology
from workers import activation

RETENTION = prune.Retention.from_settings(Settings())
HOUR = 3600.0


@pytest.fixture(scope="module")
async def own_settings(settings: Settings, amqp_connection) -> AsyncIterator[Settings]:
    own = settings.model_copy(
        update={
            "database_url": f"{settings.database_url}_prune",
            "amqp_prefix": f"{settings.amqp_prefix}_prune",
        }
    )
    await db.migrate(own.database_url)
    yield own
    await drop_topology(amqp_connection, own.amqp_prefix)
    await drop_database(own.database_url)


@pytest.fixture(scope="module")
async def own_pool(own_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(own_settings.database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def pool_(own_pool: asyncpg.Pool) -> asyncpg.Pool:
    """The test's database with nothing left past retention by an earlier test."""
    await prune.prune(own_pool, RETENTION, batch=1000)
    return own_pool


def ago(seconds: float) -> str:
    return f"now() - make_interval(secs => {seconds})"


async def new_tenant(pool: asyncpg.Pool) -> uuid.UUID:
    tenant, _ = await tenants.create_tenant(
        pool, name=f"prune-{secrets.token_hex(4)}", activation_url_prefixes=["https://a.example/"]
    )
    return tenant.id


async def new_user(pool: asyncpg.Pool, tenant_id: uuid.UUID, *, approved: bool) -> asyncpg.Record:
    name = f"u{secrets.token_hex(6)}"
    return await pool.fetchrow(
        "INSERT INTO users (id, tenant_id, user_name, email, password_hash, locale, source, "
        "is_approved) VALUES ($1, $2, $3, $4, 'x', 'en', 'self', $5) "
        "RETURNING id, tenant_id, email, user_name, locale, created_at",
        uuid.uuid4(),
        tenant_id,
        name,
        f"{name}@example.com",
        approved,
    )


async def ids(pool: asyncpg.Pool, table: str, wanted: list) -> set:
    rows = await pool.fetch(f"SELECT id FROM {table} WHERE id = ANY($1)", wanted)
    return {row["id"] for row in rows}


def deleted_by_step(results: list[prune.StepResult]) -> dict[tuple[str, str], int]:
    return {(r.table, r.rows): r.deleted for r in results}


class World:
    """Rows of every kind, each just past its retention ("old") or just inside it."""

    def __init__(self) -> None:
        self.gone: dict[str, list] = {}
        self.kept: dict[str, list] = {}

    def add(self, table: str, row_id: object, *, goes: bool) -> None:
        (self.gone if goes else self.kept).setdefault(table, []).append(row_id)


async def seed(pool: asyncpg.Pool) -> World:
    world = World()
    tenant = await new_tenant(pool)
    approved = await new_user(pool, tenant, approved=True)
    waiting = await new_user(pool, tenant, approved=False)
    r = RETENTION

    async def insert(table: str, goes: bool, sql: str, *args: object) -> object:
        row_id = await pool.fetchval(sql, *args)
        world.add(table, row_id, goes=goes)
        return row_id

    # captcha solutions: only until they expire
    for goes, expiry in ((True, ago(1)), (False, "now() + interval '10 minutes'")):
        await insert(
            "captcha_solutions",
            goes,
            "INSERT INTO captcha_solutions (challenge, tenant_id, expires_at) "
            f"VALUES ($1, $2, {expiry}) RETURNING challenge AS id",
            secrets.token_hex(8),
            tenant,
        )

    # processed messages (the "id" here is the message id)
    for goes, age in ((True, r.processed + HOUR), (False, r.processed - HOUR)):
        await insert(
            "processed_messages",
            goes,
            "INSERT INTO processed_messages (consumer, message_id, processed_at) "
            f"VALUES ('registration', $1, {ago(age)}) RETURNING message_id AS id",
            uuid.uuid4(),
        )

    # registration requests: decided ones after `requests`, undecided after `parked`
    for goes, status, age in (
        (True, "registered", r.requests + HOUR),
        (True, "rejected", r.requests + HOUR),
        (False, "registered", r.requests - HOUR),
        (False, "pending", r.requests + HOUR),
        (False, "failed", r.parked - HOUR),
        (True, "pending", r.parked + HOUR),
        (True, "failed", r.parked + HOUR),
    ):
        decided = "NULL" if status == "pending" else ago(age)
        await insert(
            "registration_requests",
            goes,
            "INSERT INTO registration_requests (id, tenant_id, idempotency_key, "
            "body_fingerprint, status, created_at, decided_at) "
            f"VALUES ($1, $2, $3, '\\x00', $4, {ago(age)}, {decided}) RETURNING id",
            uuid.uuid4(),
            tenant,
            secrets.token_hex(8),
            status,
        )

    for goes, age in ((True, r.requests + HOUR), (False, r.requests - HOUR)):
        await insert(
            "invite_requests",
            goes,
            "INSERT INTO invite_requests (id, tenant_id, idempotency_key, body_fingerprint, "
            f"created_at) VALUES ($1, $2, $3, '\\x00', {ago(age)}) RETURNING id",
            uuid.uuid4(),
            tenant,
            secrets.token_hex(8),
        )
        await insert(
            "account_requests",
            goes,
            "INSERT INTO account_requests (id, tenant_id, user_id, kind, created_at) "
            f"VALUES ($1, $2, $3, 'change', {ago(age)}) RETURNING id",
            uuid.uuid4(),
            tenant,
            approved["id"],
        )

    # tokens, invitations, sessions: counted from their expiry
    for goes, age in ((True, r.tokens + HOUR), (False, r.tokens - HOUR)):
        await insert(
            "password_recovery_tokens",
            goes,
            "INSERT INTO password_recovery_tokens (id, user_id, token_hash, recover_url, "
            f"expires_at) VALUES ($1, $2, $3, 'https://a.example/r', {ago(age)}) RETURNING id",
            uuid.uuid4(),
            approved["id"],
            secrets.token_bytes(32),
        )
        await insert(
            "invitations",
            goes,
            "INSERT INTO invitations (id, tenant_id, request_id, email, locale, token_hash, "
            f"expires_at) VALUES ($1, $2, $3, $4, 'en', $5, {ago(age)}) RETURNING id",
            uuid.uuid4(),
            tenant,
            uuid.uuid4(),
            f"{secrets.token_hex(6)}@example.com",
            secrets.token_bytes(32),
        )
        await insert(
            "user_sessions",
            goes,
            "INSERT INTO user_sessions (id, tenant_id, user_id, token_hash, ttl, expires_at) "
            f"VALUES ($1, $2, $3, $4, '1 hour', {ago(age)}) RETURNING id",
            uuid.uuid4(),
            tenant,
            approved["id"],
            secrets.token_bytes(32),
        )

    # activation tokens: the newest of a user awaiting activation stays (resends reuse it)
    for goes, user, age in (
        (True, approved, r.tokens + 2 * HOUR),
        (True, waiting, r.tokens + 3 * HOUR),
        (False, waiting, r.tokens + 2 * HOUR),  # the waiting user's newest
        (False, approved, r.tokens - HOUR),
    ):
        await insert(
            "activation_tokens",
            goes,
            "INSERT INTO activation_tokens (id, user_id, token_hash, expires_at, "
            f"activation_url, created_at) VALUES ($1, $2, $3, {ago(age)}, "
            f"'https://a.example/{{activationToken}}', {ago(age + 48 * HOUR)}) RETURNING id",
            uuid.uuid4(),
            user["id"],
            secrets.token_bytes(32),
        )

    # emails: sent after `requests`, failed after `parked`; pending never; and the
    # activation emails the resend throttle still counts stay
    for goes, to, kind, status, age in (
        (True, approved, "activation", "sent", r.requests + HOUR),
        (True, approved, "password_changed", "sent", r.requests + HOUR),
        (False, approved, "password_changed", "sent", r.requests - HOUR),
        (False, waiting, "activation", "sent", r.requests + HOUR),  # the registration's
        (False, approved, "activation", "failed", r.parked - HOUR),
        (True, approved, "password_changed", "failed", r.parked + HOUR),
        (False, approved, "password_changed", "pending", r.parked + HOUR),
    ):
        await insert(
            "emails",
            goes,
            "INSERT INTO emails (id, tenant_id, kind, recipient, status, created_at) "
            f"VALUES ($1, $2, $3, $4, $5, {ago(age)}) RETURNING id",
            uuid.uuid4(),
            tenant,
            kind,
            to["email"],
            status,
        )

    # outbox rows and the webhook deliveries that refer to them
    endpoint = await pool.fetchval(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, sealed_secret) "
        "VALUES ($1, $2, 'https://hook.example/', 'sealed') RETURNING id",
        uuid.uuid4(),
        tenant,
    )
    old, fresh = ago(r.outbox + HOUR), ago(r.outbox - HOUR)
    for goes, published, parked, delivery in (
        (True, old, "NULL", None),
        (True, old, "NULL", ("delivered", old, "NULL", True)),
        (False, old, "NULL", ("pending", "NULL", "NULL", False)),
        (False, old, "NULL", ("parked", "NULL", ago(r.parked - HOUR), False)),
        (True, old, "NULL", ("parked", "NULL", ago(r.parked + HOUR), True)),
        (False, old, "NULL", ("delivered", fresh, "NULL", False)),
        (False, fresh, "NULL", None),
        (False, "NULL", "NULL", None),  # not yet published
        (False, "NULL", old, None),  # parked: an operator's to look at
    ):
        outbox_id = await insert(
            "outbox",
            goes,
            "INSERT INTO outbox (event_id, routing_key, body, created_at, published_at, "
            f"parked_at) VALUES ($1, 'test.prune', '{{}}', {old}, {published}, {parked}) "
            "RETURNING id",
            uuid.uuid4(),
        )
        if delivery is not None:
            status, delivered_at, parked_at, delivery_goes = delivery
            await insert(
                "webhook_deliveries",
                delivery_goes,
                "INSERT INTO webhook_deliveries (endpoint_id, outbox_id, event_id, "
                "routing_key, status, delivered_at, parked_at) "
                f"VALUES ($1, $2, $3, 'test.prune', $4, {delivered_at}, {parked_at}) "
                "RETURNING id",
                endpoint,
                outbox_id,
                uuid.uuid4(),
                status,
            )
    return world


KEYS = {"captcha_solutions": "challenge", "processed_messages": "message_id"}


async def present(pool: asyncpg.Pool, table: str, wanted: list) -> set:
    key = KEYS.get(table, "id")
    rows = await pool.fetch(f"SELECT {key} AS id FROM {table} WHERE {key} = ANY($1)", wanted)
    return {row["id"] for row in rows}


async def test_each_kind_of_row_goes_after_its_retention_and_nothing_else(pool_) -> None:
    world = await seed(pool_)
    dry = await prune.prune(pool_, RETENTION, batch=2, dry_run=True)
    for table, gone in world.gone.items():  # a dry run deletes nothing
        assert await present(pool_, table, gone) == set(gone), table

    results = await prune.prune(pool_, RETENTION, batch=2)  # several batches per step

    for table, gone in world.gone.items():
        assert await present(pool_, table, gone) == set(), table
    for table, kept in world.kept.items():
        assert await present(pool_, table, kept) == set(kept), table
    expected: dict[str, int] = {table: len(gone) for table, gone in world.gone.items()}
    by_table: dict[str, int] = {}
    for result in results:
        by_table[result.table] = by_table.get(result.table, 0) + result.deleted
    assert {t: n for t, n in by_table.items() if n} == expected
    # A dry run counts outbox rows as they are: not those freed by deleting deliveries.
    assert deleted_by_step(dry) == deleted_by_step(results) | {("outbox", "published"): 1}
    assert deleted_by_step(results)[("registration_requests", "undecided")] == 2
    assert deleted_by_step(results)[("webhook_deliveries", "parked")] == 1

    # Nothing past retention is left, so a second run finds nothing.
    again = await prune.prune(pool_, RETENTION, batch=2)
    assert sum(r.deleted for r in again) == 0


async def test_the_resend_throttle_reads_the_same_after_a_prune(pool_) -> None:
    """Old activation emails of a user awaiting activation go only while two newer ones
    to the address remain: the throttle reads the newest two."""
    tenant = await new_tenant(pool_)
    user = await new_user(pool_, tenant, approved=False)
    await pool_.execute(
        "UPDATE users SET created_at = now() - interval '60 days' WHERE id = $1", user["id"]
    )
    emails = []
    for age in (RETENTION.requests + 3 * HOUR, RETENTION.requests + 2 * HOUR, 10.0):
        emails.append(
            await pool_.fetchval(
                "INSERT INTO emails (id, tenant_id, kind, recipient, status, created_at) "
                f"VALUES ($1, $2, 'activation', $3, 'sent', {ago(age)}) RETURNING id",
                uuid.uuid4(),
                tenant,
                user["email"],
            )
        )
    user = await pool_.fetchrow("SELECT * FROM users WHERE id = $1", user["id"])
    interval = dt.timedelta(seconds=60)
    async with pool_.acquire() as conn:
        assert await activation._resent_recently(conn, user, interval)
    await prune.prune(pool_, RETENTION, batch=1000)
    assert await ids(pool_, "emails", emails) == set(emails[1:])  # the oldest went
    async with pool_.acquire() as conn:
        assert await activation._resent_recently(conn, user, interval)  # still throttled


async def test_a_redelivered_command_after_a_prune_is_still_applied_once(
    pool_, token_key: bytes
) -> None:
    """Inside the retention window the processed-message record survives a prune and a
    redelivery is a no-op; past it the record goes (and the same id would apply again)."""
    tenant = await new_tenant(pool_)
    user = await new_user(pool_, tenant, approved=False)
    await pool_.execute(
        "INSERT INTO activation_tokens (id, user_id, token_hash, expires_at, activation_url) "
        "VALUES ($1, $2, $3, now() + interval '1 hour', 'https://a.example/{activationToken}')",
        uuid.uuid4(),
        user["id"],
        secrets.token_bytes(32),
    )
    command = ActivationResendRequested(tenant_id=tenant, email=user["email"])
    event = envelope(command)

    async def deliver() -> None:
        await activation.resend_activation(
            event,
            command,
            pool=pool_,
            token_key=token_key,
            ttl=dt.timedelta(hours=48),
            interval=dt.timedelta(0),  # no throttle: only dedupe counts
        )

    async def tokens() -> int:
        return await pool_.fetchval(
            "SELECT count(*) FROM activation_tokens WHERE user_id = $1", user["id"]
        )

    await deliver()
    assert await tokens() == 2
    # Something old to prune, so that the prune below really deletes processed records.
    await pool_.execute(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) "
        f"VALUES ('registration', $1, {ago(RETENTION.processed + HOUR)})",
        uuid.uuid4(),
    )
    results = await prune.prune(pool_, RETENTION, batch=1000)
    assert deleted_by_step(results)[("processed_messages", "applied")] == 1

    await deliver()  # redelivered inside the retention window
    assert await tokens() == 2

    await pool_.execute(
        f"UPDATE processed_messages SET processed_at = {ago(RETENTION.processed + HOUR)} "
        "WHERE message_id = $1",
        event.id,
    )
    results = await prune.prune(pool_, RETENTION, batch=1000)
    assert deleted_by_step(results)[("processed_messages", "applied")] == 1
    assert not await pool_.fetchval(
        "SELECT true FROM processed_messages WHERE message_id = $1", event.id
    )


async def test_concurrent_pruners_delete_each_row_once(pool_) -> None:
    old_message, old_outbox = ago(RETENTION.processed + HOUR), ago(RETENTION.outbox + HOUR)
    await pool_.execute(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) "
        f"SELECT 'registration', gen_random_uuid(), {old_message} FROM generate_series(1, 3000)"
    )
    await pool_.execute(
        "INSERT INTO outbox (event_id, routing_key, body, published_at) "
        f"SELECT gen_random_uuid(), 'test.prune', '{{}}', {old_outbox} "
        "FROM generate_series(1, 3000)"
    )
    runs = await asyncio.gather(
        *(prune.prune(pool_, RETENTION, batch=50) for _ in range(3)), return_exceptions=True
    )
    assert not [run for run in runs if isinstance(run, BaseException)], runs
    totals: dict[tuple[str, str], int] = {}
    for run in runs:
        for step, deleted in deleted_by_step(run).items():
            totals[step] = totals.get(step, 0) + deleted
    assert totals[("processed_messages", "applied")] == 3000
    assert totals[("outbox", "published")] == 3000


async def test_every_prune_statement_finds_its_rows_through_an_index(pool_) -> None:
    """With sequential scans made prohibitively expensive, a plan still containing one
    has no index to use instead: on a large table every batch would read it all."""
    cutoff = await pool_.fetchval("SELECT now()")
    async with pool_.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        for step in prune.STEPS:
            args = (cutoff, 100) if step.keep is None else (cutoff, step.max_key, 100)
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + step.delete_sql(), *args))
            assert "Seq Scan" not in plan, f"{step.table} ({step.rows}):\n{plan}"
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + step.count_sql(), cutoff))
            assert "Seq Scan" not in plan, f"{step.table} ({step.rows}) dry run:\n{plan}"


async def test_the_outbox_worker_prunes_periodically_and_reports_table_sizes(
    pool_, own_settings: Settings
) -> None:
    message = uuid.uuid4()
    await pool_.execute(
        "INSERT INTO processed_messages (consumer, message_id, processed_at) "
        f"VALUES ('registration', $1, {ago(RETENTION.processed + HOUR)})",
        message,
    )
    stop = asyncio.Event()
    supervisor = Supervisor(stop)
    worker = asyncio.create_task(
        run_workers(
            own_settings.model_copy(update={"prune_interval_s": 0.2}),
            ["outbox"],
            stop,
            supervisor,
        )
    )
    try:
        for _ in range(300):
            gone = not await pool_.fetchval(
                "SELECT true FROM processed_messages WHERE message_id = $1", message
            )
            if gone:
                break
            await asyncio.sleep(0.05)
        assert gone
        # A second row, after the first cycle: the task goes on pruning.
        second = uuid.uuid4()
        await pool_.execute(
            "INSERT INTO processed_messages (consumer, message_id, processed_at) "
            f"VALUES ('registration', $1, {ago(RETENTION.processed + HOUR)})",
            second,
        )
        for _ in range(300):
            if not await pool_.fetchval(
                "SELECT true FROM processed_messages WHERE message_id = $1", second
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the second row was not pruned")
        assert supervisor.health.report()["outbox-prune"] == "ok"
        exposition = generate_latest().decode()
        assert 'registrar_table_rows{table="outbox"}' in exposition
        assert 'registrar_table_bytes{table="processed_messages"}' in exposition
        assert 'registrar_pruned_rows_total{table="processed_messages"}' in exposition
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
