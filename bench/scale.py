"""`make bench-scale`: what registration costs as a tenant's data grows (issue 10 part 5).

For each size (default 0, 100,000 and 1,000,000 existing users in one tenant, seeded with
COPY, growing in one database):

1. seed the users up to the size: every row a real registration (and activation) leaves,
   in every table that grows with users (bench/_scale.py: seed_rows), then VACUUM ANALYZE;
2. door — the gateway alone (workers stopped), `Prefer: respond-async` with an
   Idempotency-Key, 32 connections back to back (bench/run.py's door, bench/_load.py's
   client); its requests are then forgotten (queue purged, rows deleted, VACUUM);
3. latency — gateway + `registrar worker all` + the SMTP sink: POST -> `user.registered`
   p50/p99, open loop at a modest rate; then the synchronous POST (no Prefer: the gateway
   waits for the outcome and answers 200 with the user) p50/p99, open loop.

At the largest size also:

4. EXPLAIN (ANALYZE, BUFFERS) of every statement on the hot paths (read from the service's
   source files, run with custom and with generic plans in a transaction rolled back);
   a sequential scan of a growing table, or a node discarding many rows, is flagged;
5. memory — gateway + worker with cheap argon2id parameters (so that 100,000 real
   registrations take minutes, not half an hour of hashing): RSS of each process after a
   warm-up and after N registrations pushed through the door, and table sizes.

Its own database and AMQP prefix (scale_*), dropped at the end, also on failure or Ctrl-C.
Progress on stderr; `name=value` lines last on stdout; a row per size, the memory figures
and the EXPLAIN findings appended to bench/SCALE.md (not for --quick unless --record).

    .venv/bin/python bench/scale.py [--sizes 0,100000,1000000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
import traceback
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import asyncpg  # noqa: E402
from _load import Client  # noqa: E402
from _report import quantile_ms  # noqa: E402
from _scale import (  # noqa: E402
    COLUMNS,
    SEEDED,
    SeedContext,
    append_row,
    buffers,
    literal,
    problems,
    seed_rows,
    statement_sql,
    summarize,
)
from argon2 import PasswordHasher  # noqa: E402
from run import LIMITS, Tracker, builder, fmt, identity, ok, running  # noqa: E402

from service import tokens  # noqa: E402
from service.paging import PageRequest, like_pattern  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.user_listing import count_sql, page_sql  # noqa: E402
from tests.faults.common import POSTGRES_URL  # noqa: E402
from tests.faults.harness import Environment, Options  # noqa: E402
from tests.faults.processes import Service  # noqa: E402
from tests.faults.traffic import ACTIVATION_URL  # noqa: E402

RESULTS = BENCH / "SCALE.md"
CHUNK = 25_000  # users per COPY round of one seeding process
SEED_PROCESSES = 2
# The memory phase hashes with these (argon2id minimum memory is 8 KiB per lane).
CHEAP_ARGON2 = (
    ("REGISTRAR_ARGON2_MEMORY_KIB", "64"),
    ("REGISTRAR_ARGON2_TIME_COST", "1"),
    ("REGISTRAR_ARGON2_PARALLELISM", "1"),
)


def progress(message: str) -> None:
    print(f"scale: {message}", file=sys.stderr, flush=True)


class ScaleEnvironment(Environment):
    """tests/faults' environment under names of its own: database and prefix scale_*."""

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.database_url = f"{POSTGRES_URL}/scale_{self.run_id}"
        self.prefix = f"scale_{self.run_id}"


# --- 1. seeding ----------------------------------------------------------------------------


def _copy_chunk(database_url: str, ctx: SeedContext, start: int, count: int) -> int:
    """Generate and COPY users start .. start+count-1 (runs in a seeding process)."""

    async def copy() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            # Bulk load as pg_restore --disable-triggers does: the rows are consistent by
            # construction, so the foreign-key triggers need not check each one (and the
            # tables can be loaded in any order); every index is maintained as usual.
            await conn.execute("SET session_replication_role = replica")
            rows = seed_rows(ctx, start, count)
            for table, columns in COLUMNS.items():
                await conn.copy_records_to_table(table, records=rows[table], columns=columns)
        finally:
            await conn.close()

    asyncio.run(copy())
    return count


async def seed(env: Environment, start: int, stop: int) -> float:
    """Users start .. stop-1 into the tenant; VACUUM ANALYZE. Seconds taken."""
    if stop <= start:
        return 0.0
    began = time.perf_counter()
    conn = await asyncpg.connect(env.database_url)
    try:
        tenant_id = uuid.UUID(env.tenant["id"])
        role_id = await conn.fetchval(
            "SELECT id FROM roles WHERE tenant_id = $1 AND lower(name) = 'user'", tenant_id
        )
        settings = Settings()
        password_hash = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        ).hash("a seeded user's password")
        ctx = SeedContext(tenant_id, role_id, password_hash, dt.datetime.now(dt.UTC))
        loop = asyncio.get_running_loop()
        done = 0
        with concurrent.futures.ProcessPoolExecutor(SEED_PROCESSES) as pool:
            futures = [
                loop.run_in_executor(
                    pool, _copy_chunk, env.database_url, ctx, n, min(CHUNK, stop - n)
                )
                for n in range(start, stop, CHUNK)
            ]
            try:
                last = time.perf_counter()
                for future in asyncio.as_completed(futures):
                    done += await future
                    if time.perf_counter() - last > 10:
                        last = time.perf_counter()
                        progress(f"seed: {start + done:,} of {stop:,} users")
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        copied = time.perf_counter() - began
        progress(f"seed: {stop - start:,} users copied in {copied:.0f}s; VACUUM ANALYZE")
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(SEEDED)}")
    finally:
        await conn.close()
    elapsed = time.perf_counter() - began
    progress(f"seed: {start:,} -> {stop:,} users in {elapsed:.0f}s (vacuum included)")
    return elapsed


async def table_sizes(database_url: str) -> dict[str, float]:
    """MB (data + indexes + TOAST) of each growing table, and `database`."""
    conn = await asyncpg.connect(database_url)
    try:
        sizes = {
            table: await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            for table in SEEDED
        }
        sizes["database"] = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {name: size / 2**20 for name, size in sizes.items()}


async def count_users(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT count(*) FROM users")
    finally:
        await conn.close()


# --- requests --------------------------------------------------------------------------------


def keyed(build):
    """bench/run.py's respond-async request with an Idempotency-Key of its own."""

    def build_keyed(n: int) -> tuple[bytes, str]:
        data, email = build(n)
        header = f"Host: 127.0.0.1\r\nIdempotency-Key: {uuid.uuid4()}\r\n".encode()
        return data.replace(b"Host: 127.0.0.1\r\n", header, 1), email

    return build_keyed


def waiting(build):
    """The same request without `Prefer: respond-async`: the gateway waits for the
    outcome (up to REGISTRAR_REGISTER_WAIT_S) and answers 200 with the user."""

    def build_waiting(n: int) -> tuple[bytes, str]:
        data, email = build(n)
        return data.replace(b"Prefer: respond-async\r\n", b"", 1), email

    return build_waiting


def tag() -> str:
    return uuid.uuid4().hex[:6]


# --- 2. the door -----------------------------------------------------------------------------


async def door_phase(env: Environment, size: int, args) -> float:
    """202/s of the gateway alone, 32 connections, closed loop; then forget its requests."""
    service = Service(env.env, env.root / f"door-{size}", workers=0)
    try:
        await service.start()
        client = Client("127.0.0.1", service.port)
        build = keyed(builder(env.tenant["apiKey"], f"d{tag()}."))
        await client.closed_loop(build, 32, 2.0)  # warm-up
        client.samples.clear()
        elapsed = await client.closed_loop(build, 32, args.door_s)
        door = len(ok(client.samples)) / elapsed
        progress(f"door at {size:,}: {door:.1f} 202/s")
    finally:
        codes = service.stop()
        if any(codes.values()):
            progress(f"door: processes exited {codes}; logs in {service.log_dir}")
    await forget_door(env)
    return door


async def forget_door(env: Environment) -> None:
    """The door's requests were never meant to be processed: purge their commands, delete
    their rows (the only pending ones) and VACUUM what they left behind."""
    channel = await env.amqp.channel()
    try:
        queue = await channel.declare_queue(f"{env.prefix}.registration", passive=True)
        await queue.purge()
    finally:
        await channel.close()
    conn = await asyncpg.connect(env.database_url)
    try:
        pending = "SELECT id FROM registration_requests WHERE status = 'pending'"
        await conn.execute(f"DELETE FROM outbox WHERE event_id IN ({pending})")
        deleted = await conn.execute("DELETE FROM registration_requests WHERE status = 'pending'")
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) registration_requests, outbox")
        progress(
            f"door: {deleted.split()[-1]} requests forgotten, "
            f"VACUUM {time.perf_counter() - started:.1f}s"
        )
    finally:
        await conn.close()


# --- 3. latency ------------------------------------------------------------------------------


async def latency_phase(env: Environment, size: int, args) -> dict[str, float]:
    """POST -> user.registered (respond-async) and the waiting POST, open loop."""
    figures: dict[str, float] = {}
    async with running(env, f"latency-{size}") as (_, tracker, client):
        api_key = env.tenant["apiKey"]

        async def e2e(rate: float, seconds: float, what: str) -> list[float]:
            client.samples.clear()
            await client.open_loop(keyed(builder(api_key, f"e{tag()}.")), rate, seconds)
            accepted = ok(client.samples)
            await tracker.drain([s.email for s in accepted], 120, what=what)
            latencies = [
                tracker.events[s.email] - s.start for s in accepted if s.email in tracker.events
            ]
            if len(latencies) < len(accepted):
                progress(f"{what}: {len(accepted) - len(latencies)} events never seen")
            return latencies

        await e2e(args.e2e_rate, 3.0, "warm-up")
        progress(f"e2e at {size:,}: open loop at {args.e2e_rate:g}/s for {args.e2e_s:g}s")
        latencies = await e2e(args.e2e_rate, args.e2e_s, "e2e")
        figures["e2e_p50_ms"] = quantile_ms(latencies, 50)
        figures["e2e_p99_ms"] = quantile_ms(latencies, 99)
        progress(
            f"e2e at {size:,}: p50 {figures['e2e_p50_ms']:.1f} ms, "
            f"p99 {figures['e2e_p99_ms']:.1f} ms ({len(latencies)} registrations)"
        )

        progress(f"sync at {size:,}: open loop at {args.sync_rate:g}/s for {args.sync_s:g}s")
        client.samples.clear()
        build = waiting(keyed(builder(api_key, f"s{tag()}.")))
        await client.open_loop(build, args.sync_rate, args.sync_s)
        answered = [s for s in client.samples if s.status == 200]
        if len(answered) < len(client.samples):
            kinds = sorted({str(s.status) for s in client.samples if s.status != 200})
            progress(f"sync: {len(client.samples) - len(answered)} answers were not 200: {kinds}")
        waits = [s.done - s.start for s in answered]
        figures["sync_p50_ms"] = quantile_ms(waits, 50)
        figures["sync_p99_ms"] = quantile_ms(waits, 99)
        progress(
            f"sync at {size:,}: p50 {figures['sync_p50_ms']:.1f} ms, "
            f"p99 {figures['sync_p99_ms']:.1f} ms"
        )
        await tracker.drain([s.email for s in answered], 60, what="sync")
    return figures


# --- 4. EXPLAIN ------------------------------------------------------------------------------

# (label, source file, marker, parameters from the state, keep). `keep`: the statement is
# also executed for real afterwards (in the transaction that is rolled back at the end),
# so that later statements find what it wrote, as they do in the service.
STATEMENTS = (
    # The gateway: POST /{apiKey}/register, its status resource, activation.
    ("gateway: tenant by API key hash", "service/tenants.py", "WHERE api_key_hash = $1",
     lambda s: [s["api_key_hash"]], False),
    ("gateway: Idempotency-Key lookup", "service/registrations.py", "AND idempotency_key = $2",
     lambda s: [s["tenant"], s["idempotency_key"]], False),
    ("gateway: record requests (intake, one statement per batch)", "service/intake.py",
     "WITH batch AS",
     lambda s: [[s["request"]], [s["tenant"]], [str(uuid.uuid4())], [os.urandom(32)],
                [s["new_email"]], [s["new_user_name"]], ["en"], [None],
                ["register.requested"], [s["body"]], dt.timedelta(minutes=10),
                dt.timedelta(seconds=30), [s["seeded_request"]], [None]], True),
    ("gateway: mark confirmed commands published (idle)", "service/intake.py",
     "UPDATE outbox SET published_at = now(), body = body #- '{data,sealedPassword}'\nWHERE",
     lambda s: [[s["request"]]], False),
    ("gateway: outbox insert (invitation command)", "service/commands.py",
     "INSERT INTO outbox (event_id, routing_key, body, available_at)",
     lambda s: [uuid.uuid4(), "invite.requested", s["body"], dt.timedelta(seconds=30)], True),
    ("gateway: outbox mark published", "service/commands.py",
     "UPDATE outbox SET published_at = now(), body = body #- '{data,sealedPassword}' "
     "WHERE event_id", lambda s: [s["request"]], False),
    ("gateway: undo request (broker refused)", "service/registrations.py",
     "DELETE FROM registration_requests WHERE id", lambda s: [s["request"]], False),
    ("gateway: undo outbox command", "service/commands.py", "DELETE FROM outbox WHERE event_id",
     lambda s: [s["request"]], False),
    ("gateway: status resource (request)", "service/registrations.py",
     "WHERE tenant_id = $1 AND id = $2", lambda s: [s["tenant"], s["seeded_request"]], False),
    ("gateway: status resource (user + roles)", "service/users.py", "json_agg",
     lambda s: [s["seeded_user"], s["tenant"]], False),
    ("gateway: activation token lookup", "service/single_use.py", "activation_tokens t JOIN",
     lambda s: [s["token_hash"], s["tenant"]], False),
    ("gateway: activation outcome check", "service/single_use.py",
     "SELECT used_by FROM activation_tokens", lambda s: [s["token"]], False),
    # The registration worker.
    ("worker: request status", "workers/registration.py",
     "SELECT status FROM registration_requests WHERE id = $1", lambda s: [s["request"]], False),
    ("worker: processed-message dedup insert", "workers/dedup.py",
     "INSERT INTO processed_messages", lambda s: ["registration", s["request"]], True),
    ("worker: processed record + lock request", "workers/registration.py", "WITH first AS",
     lambda s: ["registration", uuid.uuid4(), s["request"]], True),
    ("worker: insert user + default role (uniqueness check)", "workers/registration.py",
     "INSERT INTO users",
     lambda s: [s["user"], s["tenant"], s["new_user_name"], s["new_email"], "$argon2id$x",
                "en", "self", "", False, ["user"]], True),
    ("worker: which of email / userName is taken", "workers/registration.py",
     "AS user_name\n", lambda s: [s["tenant"], s["seeded_email"], s["new_user_name"]], False),
    ("worker: decide (request, token, email row, outbox, NOTIFY)", "workers/registration.py",
     "WITH decided AS",
     lambda s: [s["user"], s["request"], uuid.uuid4(), s["user"], os.urandom(32),
                dt.timedelta(hours=48), ACTIVATION_URL, uuid.uuid4(), s["tenant"],
                "activation", s["new_email"], "en",
                json.dumps({"user_name": s["new_user_name"]}), uuid.uuid4(),
                "user.registered", s["body"], uuid.uuid4(), "email.requested", s["body"],
                "registrar_decided", str(s["request"])], True),
    ("worker: outbox insert (event)", "service/outbox.py",
     "INSERT INTO outbox (event_id, routing_key, body) VALUES",
     lambda s: [uuid.uuid4(), "user.registered", s["body"]], True),
    ("worker: insert activation token", "workers/activation.py",
     "INSERT INTO activation_tokens",
     lambda s: [s["new_token"], s["user"], os.urandom(32), dt.timedelta(hours=48),
                ACTIVATION_URL], True),
    ("worker: insert email row", "service/emails.py", "INSERT INTO emails",
     lambda s: [s["new_email_id"], s["tenant"], "activation", s["new_email"], "en",
                json.dumps({"user_name": s["new_user_name"]})], True),
    ("worker: request rejected", "workers/registration.py", "SET status = 'rejected'",
     lambda s: [s["request"], "email_taken", uuid.uuid4()], False),
    ("worker: duplicates mode of tenant", "workers/registration.py",
     "SELECT duplicates = 'silent' FROM tenants", lambda s: [s["tenant"]], False),
    ("worker: owner of a taken address", "workers/registration.py",
     "SELECT email, user_name, locale FROM users", lambda s: [s["tenant"], s["seeded_email"]],
     False),
    ("worker: request failed (dead-lettered)", "workers/registration.py",
     "SET status = 'failed', reason = 'processing_failed'", lambda s: [s["request"]], False),
    # The outbox relay.
    ("relay: due rows FOR UPDATE SKIP LOCKED", "workers/outbox.py",
     "LIMIT $1 FOR UPDATE SKIP LOCKED", lambda s: [100], True),
    ("relay: mark published", "workers/outbox.py", "WHERE id = ANY($1::bigint[])",
     lambda s: [s["relay_ids"]], False),
    ("relay: record failures", "workers/outbox.py", "UPDATE outbox AS o",
     lambda s: [s["relay_ids"], ["x"] * len(s["relay_ids"]), 5, 5.0, 300.0], False),
    # The mailer.
    ("mailer: claim email (lock, lease, tenant)", "workers/mailer.py", "WITH old AS",
     lambda s: [s["seeded_email_id"], s["tenant"], 120.0], False),
    ("mailer: record sent + email.delivered", "workers/mailer.py", "WITH sent AS",
     lambda s: [s["seeded_email_id"], uuid.uuid4(), "email.delivered", s["body"]], False),
    ("mailer: release claim", "workers/mailer.py", "SET status = 'pending', lease_until = NULL",
     lambda s: [s["seeded_email_id"], "x"], False),
    ("mailer: record failure", "workers/mailer.py", "SET status = 'failed', lease_until = NULL",
     lambda s: [s["seeded_email_id"], "x", s["tenant"]], False),
    # Activation and resend (registration worker).
    ("worker: consume activation token", "workers/activation.py",
     "UPDATE activation_tokens SET used_at = now()", lambda s: [s["token"], uuid.uuid4()],
     False),
    ("worker: approve user", "workers/activation.py", "UPDATE users SET is_approved = true",
     lambda s: [s["seeded_user"], s["tenant"]], False),
    ("worker: resend: user by address", "workers/activation.py", "AND NOT is_approved FOR UPDATE",
     lambda s: [s["tenant"], s["seeded_email"]], False),
    ("worker: resend: throttle", "workers/activation.py", "AND lower(recipient) = lower($2)",
     lambda s: [s["tenant"], s["seeded_email"], s["seeded_created"], dt.timedelta(seconds=60)],
     False),
    ("worker: resend: activation URL", "workers/activation.py",
     "SELECT activation_url FROM activation_tokens", lambda s: [s["seeded_user"]], False),
    ("worker: resend: revoke older tokens", "workers/activation.py",
     "UPDATE activation_tokens SET revoked_at = now()", lambda s: [s["seeded_user"]], False),
    # The back office (GET /{apiKey}/users and the changes), at 10 users a page.
    ("back office: users total (per-tenant counters)", "service/user_listing.py",
     "FROM user_counts WHERE tenant_id = $1", lambda s: [s["tenant"]], False),
    ("back office: page 1 by userName", "service/user_listing.py",
     lambda: page_sql(PageRequest(sort="userName")), lambda s: [s["tenant"], 10, 0], False),
    ("back office: the deepest page by userName (the middle: offset users/2)",
     "service/user_listing.py", lambda: page_sql(PageRequest(sort="userName")),
     lambda s: [s["tenant"], 10, s["users"] // 2 - 10], False),
    ("back office: the last page by userName (read from the end)", "service/user_listing.py",
     lambda: page_sql(PageRequest(sort="userName"), from_end=True),
     lambda s: [s["tenant"], 10, 0], False),
    ("back office: page 1 by email, descending", "service/user_listing.py",
     lambda: page_sql(PageRequest(sort="email", descending=True)),
     lambda s: [s["tenant"], 10, 0], False),
    ("back office: page 1 by dateCreated, not approved", "service/user_listing.py",
     lambda: page_sql(PageRequest(sort="dateCreated", filters={"isApproved": False})),
     lambda s: [s["tenant"], 10, 0], False),
    ("back office: the deepest page by dateUpdated, approved", "service/user_listing.py",
     lambda: page_sql(PageRequest(sort="dateUpdated", filters={"isApproved": True})),
     lambda s: [s["tenant"], 10, s["approved"] // 2 - 10], False),
    ("back office: page 1 of locked users by userName", "service/user_listing.py",
     lambda: page_sql(PageRequest(sort="userName", filters={"isLocked": True})),
     lambda s: [s["tenant"], 10, 0], False),
    ("back office: search, page 1 (one user's name)", "service/user_listing.py",
     lambda: page_sql(PageRequest(sort="userName", search="x")),
     lambda s: [s["tenant"], like_pattern(s["seeded_name"]), 10, 0], False),
    ("back office: search, its total (one user's name)", "service/user_listing.py",
     lambda: count_sql(PageRequest(search="x")),
     lambda s: [s["tenant"], like_pattern(s["seeded_name"])], False),
    ("back office: page rows", "service/user_listing.py", "FROM users WHERE id = ANY",
     lambda s: [[s["seeded_user"]]], False),
    ("back office: page roles", "service/user_listing.py", "WHERE ur.user_id = ANY",
     lambda s: [[s["seeded_user"]]], False),
    ("back office: user by userName or id", "service/users.py", "OR id = $3",
     lambda s: [s["tenant"], s["seeded_name"], s["seeded_user"]], False),
    ("back office: lock the user's row (with its roles)", "service/user_admin.py",
     "ARRAY(SELECT role_id FROM user_roles", lambda s: [s["seeded_user"], s["tenant"]], False),
    ("back office: update userName / email / name (counters untouched)",
     "service/user_admin.py", "SET user_name = COALESCE($2, user_name)",
     lambda s: [s["seeded_user"], None, None, "Renamed"], False),
    ("back office: lock (counter trigger)", "service/user_admin.py",
     "SET is_locked_out = true, updated_at = now()", lambda s: [s["seeded_user"]], False),
    ("back office: is a role held (one nobody holds; run with a custom plan)",
     "service/roles.py",
     "FROM user_roles WHERE role_id = $1", lambda s: [s["admin_role"]], False),
)  # fmt: skip


async def explain_state(conn: asyncpg.Connection, env: Environment) -> dict:
    """Parameter values: a random seeded user still awaiting activation, and new ids."""
    tenant = uuid.UUID(env.tenant["id"])
    row = await conn.fetchrow(
        "SELECT u.id, u.email, u.created_at, t.id AS token, t.token_hash, r.id AS request, "
        "e.id AS email_id FROM users u "
        "JOIN activation_tokens t ON t.user_id = u.id "
        "JOIN registration_requests r ON r.user_id = u.id "
        "JOIN emails e ON e.tenant_id = u.tenant_id AND lower(e.recipient) = lower(u.email) "
        "WHERE u.tenant_id = $1 AND NOT u.is_approved ORDER BY random() LIMIT 1",
        tenant,
    )
    key = await conn.fetchval(
        "SELECT idempotency_key FROM registration_requests WHERE tenant_id = $1 "
        "AND idempotency_key IS NOT NULL ORDER BY random() LIMIT 1",
        tenant,
    )
    name = f"explain{tag()}"
    request = uuid.uuid4()
    counts = await conn.fetchrow(
        "SELECT sum(users) AS users, sum(approved) AS approved FROM user_counts "
        "WHERE tenant_id = $1",
        tenant,
    )
    return {
        "users": int(counts["users"]),
        "approved": int(counts["approved"]),
        "seeded_name": await conn.fetchval("SELECT user_name FROM users WHERE id = $1", row["id"]),
        "admin_role": await conn.fetchval(
            "SELECT id FROM roles WHERE tenant_id = $1 AND lower(name) = 'admin'", tenant
        ),
        "tenant": tenant,
        "api_key_hash": tokens.hash_secret(env.tenant["apiKey"]),
        "idempotency_key": key or str(uuid.uuid4()),
        "seeded_user": row["id"],
        "seeded_email": row["email"],
        "seeded_created": row["created_at"],
        "seeded_request": row["request"],
        "seeded_email_id": row["email_id"],
        "token": row["token"],
        "token_hash": row["token_hash"],
        "request": request,
        "user": uuid.uuid4(),
        "new_token": uuid.uuid4(),
        "new_email_id": uuid.uuid4(),
        "new_email": f"{name}@example.com",
        "new_user_name": name,
        "body": json.dumps({"id": str(request), "data": {"email": f"{name}@example.com"}}),
        "relay_ids": [0],
    }


async def _explain_one(conn: asyncpg.Connection, sql: str, params: list, mode: str) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) EXECUTE under plan_cache_mode `mode`, undone after."""
    args = f"({', '.join(literal(p) for p in params)})" if params else ""
    await conn.execute(f"PREPARE scale_explain AS {sql}")
    try:
        async with conn.transaction():  # a savepoint: what the statement did is undone
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE scale_explain{args}"
            )
            raise _Undo(json.loads(raw)[0])
    except _Undo as undo:
        return undo.result
    finally:
        await conn.execute("DEALLOCATE scale_explain")


class _Undo(Exception):
    def __init__(self, result: dict) -> None:
        self.result = result


async def explain_phase(env: Environment) -> list[dict]:
    """Every hot statement at this size: plan shape, time, buffers, problems."""
    conn = await asyncpg.connect(env.database_url)
    findings: list[dict] = []
    try:
        state = await explain_state(conn, env)
        transaction = conn.transaction()
        await transaction.start()
        try:
            for label, path, marker, params_of, keep in STATEMENTS:
                sql = statement_sql(ROOT / path, marker)
                params = params_of(state)
                custom = await _explain_one(conn, sql, params, "force_custom_plan")
                generic = await _explain_one(conn, sql, params, "force_generic_plan")
                found = {
                    "label": label,
                    "source": path,
                    "plan": summarize(custom["Plan"]),
                    "generic": summarize(generic["Plan"]),
                    "ms": custom["Execution Time"],
                    "generic_ms": generic["Execution Time"],
                    "buffers": buffers(custom["Plan"]),
                    "problems": sorted(
                        set(problems(custom["Plan"])) | set(problems(generic["Plan"]))
                    ),
                }
                findings.append(found)
                flag = f"  <-- {'; '.join(found['problems'])}" if found["problems"] else ""
                progress(f"explain: {label}: {found['plan']}, {found['ms']:.3f} ms{flag}")
                if keep:
                    rows = await conn.fetch(sql, *params)
                    if "SKIP LOCKED" in marker and rows:
                        state["relay_ids"] = [r["id"] for r in rows]
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    return findings


# --- 5. memory -------------------------------------------------------------------------------


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc/PID/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


async def push(client: Client, tracker: Tracker, api_key: str, count: int, what: str,
               timeout: float, pids: dict[str, int]) -> tuple[int, int, float]:  # fmt: skip
    """`count` respond-async registrations through the door at once (32 connections);
    wait until the workers completed them (event + email seen), at most `timeout` s.
    (accepted, completed, seconds)."""
    events, emails = len(tracker.events), len(tracker.emails)
    client.samples.clear()
    started = time.perf_counter()
    sending = asyncio.create_task(client.burst(keyed(builder(api_key, f"m{tag()}.")), count, 32))
    last_report = last_change = started
    last_done = -1
    accepted: int | None = None  # known once every request was answered
    while True:
        await asyncio.sleep(1)
        done = min(len(tracker.events) - events, len(tracker.emails) - emails)
        now = time.perf_counter()
        if accepted is None and sending.done():
            await sending
            accepted = len(ok(client.samples))
        if accepted is not None and done >= accepted:
            break
        if done != last_done:
            last_done, last_change = done, now
        if now - last_change > 60 or now - started > timeout:
            progress(f"{what}: stopped waiting after {now - started:.0f}s at {done:,} completed")
            break
        if now - last_report >= 30:
            last_report = now
            rss = ", ".join(f"{name} {rss_mb(pid)[0]:.1f} MB" for name, pid in pids.items())
            progress(
                f"{what}: {len(client.samples):,} answered, {done:,} completed after "
                f"{now - started:.0f}s; RSS {rss}"
            )
    if accepted is None:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        accepted = len(ok(client.samples))
    done = min(len(tracker.events) - events, len(tracker.emails) - emails)
    return accepted, done, time.perf_counter() - started


async def memory_phase(env: Environment, args) -> dict[str, float]:
    figures: dict[str, float] = {}
    process_env = {**env.env, **dict(CHEAP_ARGON2), "REGISTRAR_LOG_LEVEL": args.memory_log_level}
    async with running(env, "memory", process_env) as (service, tracker, client):
        api_key = env.tenant["apiKey"]
        pids = {"gateway": service.gateway.popen.pid, "worker": service.workers[0].popen.pid}
        await push(client, tracker, api_key, args.memory_warmup, "memory warm-up", 300, pids)
        for name, pid in pids.items():
            figures[f"rss_{name}_mb_before"], _ = rss_mb(pid)
        sizes = await table_sizes(env.database_url)
        figures["db_mb_before"] = sizes["database"]
        progress(
            f"memory: RSS after a {args.memory_warmup:,} warm-up: gateway "
            f"{figures['rss_gateway_mb_before']:.1f} MB, worker "
            f"{figures['rss_worker_mb_before']:.1f} MB; pushing {args.memory_n:,} "
            f"registrations (argon2id {argon2_label()}, log level {args.memory_log_level})"
        )
        accepted, done, seconds = await push(
            client, tracker, api_key, args.memory_n, "memory", args.memory_timeout_s, pids
        )
        figures["memory_registrations"] = done
        figures["memory_s"] = seconds
        if done < args.memory_n:
            progress(
                f"memory: only {done:,} of {args.memory_n:,} registrations completed "
                f"({accepted:,} accepted) within {args.memory_timeout_s:.0f}s: RSS is after those"
            )
        for name, pid in pids.items():
            figures[f"rss_{name}_mb_after"], figures[f"rss_{name}_mb_peak"] = rss_mb(pid)
        sizes = await table_sizes(env.database_url)
        figures["db_mb_after"] = sizes["database"]
        for table in SEEDED:
            figures[f"table_mb_{table}"] = sizes[table]
        progress(
            f"memory: {done:,} registrations in {seconds:.0f}s; RSS gateway "
            f"{figures['rss_gateway_mb_before']:.1f} -> {figures['rss_gateway_mb_after']:.1f}"
            f" MB, worker {figures['rss_worker_mb_before']:.1f} -> "
            f"{figures['rss_worker_mb_after']:.1f} MB"
        )
    return figures


def argon2_label() -> str:
    cheap = dict(CHEAP_ARGON2)
    return (
        f"m={cheap['REGISTRAR_ARGON2_MEMORY_KIB']} KiB, t={cheap['REGISTRAR_ARGON2_TIME_COST']}, "
        f"p={cheap['REGISTRAR_ARGON2_PARALLELISM']}"
    )


# --- output ----------------------------------------------------------------------------------

HEADER = """# make bench-scale results

`make bench-scale` (`bench/scale.py`, outside `make bench`'s ten minutes) measures what a
registration costs as a tenant's data grows: with 0, 100,000 and 1,000,000 existing users
in the tenant (seeded with COPY: every row a real registration and activation leaves in
`users`, `user_roles`, `registration_requests`, `activation_tokens`, `emails`, `outbox` and
`processed_messages`; then VACUUM ANALYZE). The machine is shared and noisy: compare the
rows of one run (same date and commit), not runs with each other. Target (issue 10): with
1,000,000 users, figures within 10 % of the empty tenant.

* `seed_s` — seconds to COPY the users added for this size, VACUUM ANALYZE included.
* `door_rps` — 202/s of the gateway alone (workers stopped), `Prefer: respond-async` with
  an Idempotency-Key, 32 connections back to back; `door_change` against the first size.
* `e2e_p50_ms` / `e2e_p99_ms` — POST (respond-async) to its `user.registered` event,
  gateway + `registrar worker all` (real argon2id), open loop at 10/s for 20 s (well
  below the ~45/s the pipeline completes on this machine, so that queueing behind the
  neighbours' load does not drown the figure).
* `sync_p50_ms` / `sync_p99_ms` — POST without `Prefer`: the gateway waits for the
  outcome and answers 200 with the user; open loop at 5/s for 12 s.
* `*_change` — against the first size (0 users): + is more (rate) or slower (latency).

## Latency and door rate by tenant size

{size_table}

## Memory after many registrations

Gateway and worker started on the largest tenant with cheap argon2id parameters (the real
ones would spend ~20 minutes hashing 100,000 passwords on this machine) and log level
WARNING (less CPU per registration; logging keeps no memory), a warm-up, then N
registrations pushed through the door at once (respond-async, 32 connections) and
completed by the workers (event + email seen), within a time cap (then N is what was
completed). RSS from /proc/PID/status (VmRSS; peak: VmHWM).

{memory_table}

## EXPLAIN (ANALYZE, BUFFERS) of the hot statements at the largest size

Each statement as read from its source file, with the parameters of a random seeded user
(or a new one), run in a transaction that is rolled back; plans with `plan_cache_mode`
custom and generic (asyncpg's prepared statements get the generic plan after five
executions). Flagged: a sequential scan of a table that grows with users, or a node that
reads and discards more than 1,000 rows.
"""
SIZE_COLUMNS = (
    "date (UTC)", "commit", "machine", "cpus", "users", "seed_s", "door_rps", "door_change",
    "e2e_p50_ms", "e2e_p99_ms", "e2e_p50_change", "e2e_p99_change", "sync_p50_ms",
    "sync_p99_ms",
)  # fmt: skip
MEMORY_COLUMNS = (
    "date (UTC)", "commit", "machine", "users before", "registrations", "argon2id", "seconds",
    "gateway RSS MB before -> after (peak)", "worker RSS MB before -> after (peak)",
    "database MB before -> after",
)  # fmt: skip


def table_head(columns: tuple[str, ...]) -> str:
    return "| " + " | ".join(columns) + " |\n" + "| --- " * len(columns) + "|"


SIZE_TABLE = table_head(SIZE_COLUMNS).split("\n")[0]
MEMORY_TABLE = table_head(MEMORY_COLUMNS).split("\n")[0]


def change(value: float, base: float) -> str:
    if value != value or base != base or not base:
        return "nan"
    return f"{(value / base - 1) * 100:+.1f}%"


def record(sizes: list[int], figures: dict[str, float], findings: list[dict], args) -> None:
    if RESULTS.exists():
        text = RESULTS.read_text()
    else:
        text = HEADER.format(
            size_table=table_head(SIZE_COLUMNS), memory_table=table_head(MEMORY_COLUMNS)
        )
    date, commit, machine = identity()

    def get(name: str) -> float:
        return figures.get(name, float("nan"))

    for size in sizes:
        if f"door_rps_{size}" not in figures and f"e2e_p50_ms_{size}" not in figures:
            continue
        cells = [date, commit, machine, str(os.cpu_count()), f"{size:,}"]
        cells += [fmt(get(f"seed_s_{size}")), fmt(get(f"door_rps_{size}"))]
        cells += [figures.get(f"door_change_{size}_text", "")]
        cells += [fmt(get(f"e2e_p50_ms_{size}")), fmt(get(f"e2e_p99_ms_{size}"))]
        cells += [figures.get(f"e2e_p50_change_{size}_text", "")]
        cells += [figures.get(f"e2e_p99_change_{size}_text", "")]
        cells += [fmt(get(f"sync_p50_ms_{size}")), fmt(get(f"sync_p99_ms_{size}"))]
        text = append_row(text, SIZE_TABLE, cells)
    if "rss_worker_mb_after" in figures:
        cells = [date, commit, machine, f"{int(figures['memory_users']):,}"]
        cells += [f"{int(figures['memory_registrations']):,}"]
        cells += [f"{argon2_label()}; log level {args.memory_log_level}"]
        cells += [fmt(figures["memory_s"])]
        for name in ("gateway", "worker"):
            cells.append(
                f"{get(f'rss_{name}_mb_before'):.1f} -> {get(f'rss_{name}_mb_after'):.1f} "
                f"({get(f'rss_{name}_mb_peak'):.1f})"
            )
        cells.append(f"{get('db_mb_before'):,.0f} -> {get('db_mb_after'):,.0f}")
        text = append_row(text, MEMORY_TABLE, cells)
    if findings:
        text = text.rstrip("\n") + "\n\n" + explain_section(findings, figures, date, commit)
    RESULTS.write_text(text.rstrip("\n") + "\n")
    progress(f"recorded in {RESULTS.relative_to(ROOT)}")


def explain_section(findings: list[dict], figures: dict, date: str, commit: str) -> str:
    users = int(figures.get("explain_users", 0))
    flagged = sum(bool(f["problems"]) for f in findings)
    lines = [
        f"### {date}, {commit}: {users:,} users, {len(findings)} statements, {flagged} flagged",
        "",
        "| statement | source | plan (custom) | ms | buffers hit/read | generic plan, ms | flag |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in findings:
        generic = "same" if f["generic"] == f["plan"] else f["generic"]
        hit, read = f["buffers"]
        lines.append(
            f"| {f['label']} | `{f['source']}` | {f['plan']} | {f['ms']:.3f} | {hit}/{read} "
            f"| {generic}, {f['generic_ms']:.3f} | {'; '.join(f['problems']) or 'ok'} |"
        )
    return "\n".join(lines) + "\n"


async def main(args) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    sizes = sorted(set(args.sizes))
    options = Options(log_level=args.log_level, process_env=LIMITS)
    figures: dict[str, float] = {}
    findings: list[dict] = []
    began = time.perf_counter()
    finished = False
    env = ScaleEnvironment(options)
    try:
        async with env:
            seeded = 0
            for size in sizes:
                figures[f"seed_s_{size}"] = await seed(env, seeded, size)
                seeded = max(seeded, size)
                figures[f"door_rps_{size}"] = await door_phase(env, size, args)
                for name, value in (await latency_phase(env, size, args)).items():
                    figures[f"{name}_{size}"] = value
                progress(f"size {size:,} done at {time.perf_counter() - began:.0f}s")
            if not args.skip_explain:
                figures["explain_users"] = await count_users(env.database_url)
                findings = await explain_phase(env)
            if args.memory_n:
                figures["memory_users"] = await count_users(env.database_url)
                figures.update(await memory_phase(env, args))
        finished = True
    except Exception:
        progress(f"failed:\n{traceback.format_exc()}")
        raise
    finally:
        progress(f"done in {time.perf_counter() - began:.0f}s")
        base = sizes[0]
        for size in sizes[1:]:
            for name in ("door_rps", "e2e_p50_ms", "e2e_p99_ms", "sync_p50_ms", "sync_p99_ms"):
                value, first = figures.get(f"{name}_{size}"), figures.get(f"{name}_{base}")
                if value is not None and first is not None:
                    short = name.removesuffix("_rps").removesuffix("_ms")
                    figures[f"{short}_change_{size}_text"] = change(value, first)
        if finished or figures:
            if args.record:
                record(sizes, figures, findings, args)
            else:
                progress("not recorded in bench/SCALE.md (--quick; --record to record)")
        if finished:
            env.remove_logs()
        else:
            progress(f"logs kept under {env.root}")
        for name, value in figures.items():
            if name.endswith("_text"):
                print(f"{name.removesuffix('_text')}={value}", flush=True)
            elif name not in ("explain_users",):
                print(f"{name}={fmt(value)}", flush=True)
        if findings:
            flagged = [f["label"] for f in findings if f["problems"]]
            print(f"explain_statements={len(findings)}", flush=True)
            print(f"explain_flagged={len(flagged)}", flush=True)
    return 0 if finished else 1


def parse_sizes(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[0, 100_000, 1_000_000])
    parser.add_argument("--door-s", type=float, default=10.0)
    parser.add_argument("--e2e-rate", type=float, default=10.0, help="registrations/s")
    parser.add_argument("--e2e-s", type=float, default=20.0)
    parser.add_argument("--sync-rate", type=float, default=5.0, help="registrations/s")
    parser.add_argument("--sync-s", type=float, default=12.0)
    parser.add_argument("--memory-n", type=int, default=100_000, help="0: no memory phase")
    parser.add_argument("--memory-warmup", type=int, default=2000)
    parser.add_argument(
        "--memory-timeout-s", type=float, default=1200.0, help="cap of the memory phase"
    )
    parser.add_argument("--memory-log-level", default="WARNING", help="memory phase only")
    parser.add_argument("--skip-explain", action="store_true")
    parser.add_argument("--log-level", default="INFO", help="of the registrar processes")
    parser.add_argument("--quick", action="store_true", help="small sizes, short phases")
    parser.add_argument("--record", action="store_true", help="record a --quick run too")
    args = parser.parse_args(argv)
    if args.quick:
        if "--sizes" not in " ".join(argv if argv is not None else sys.argv):
            args.sizes = [0, 20_000]
        args.door_s, args.e2e_s, args.sync_s = 3.0, 5.0, 3.0
        if "--memory-n" not in " ".join(argv if argv is not None else sys.argv):
            args.memory_n = 2000
        args.memory_warmup = 200
    else:
        args.record = True
    return args


def main_sync(argv=None) -> int:
    args = parse_args(argv)
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return asyncio.run(main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; processes stopped, database and queues dropped")
        return 130


if __name__ == "__main__":
    sys.exit(main_sync())
