"""CPU cost of one registration, per process, on the real pipeline of `make bench`.

Starts what bench/run.py starts for its pipeline phases (gateway + `registrar worker all`
+ the SMTP sink of tests/faults, fresh database and AMQP prefix), pushes N registrations
through it with closed-loop clients (each POSTs with `Prefer: respond-async` and waits
until its `user.registered` event and activation email are seen, as run.py's pipeline
phase does), and reads the CPU time (utime + stime from /proc) every process involved
spent between the first request and the last completion:

* gateway, worker (split: its main thread = the event loop, and its other threads =
  the argon2 hash pool), SMTP sink, this process (load generator + event tracker);
* postgres: the backends connected to the run's database, and separately the server's
  background processes and postmaster (walwriter, checkpointer, autovacuum: shared with
  whatever else uses the server; other databases' backends are not counted);
* RabbitMQ: beam.smp (shared by everything on the machine: another user's traffic during
  the run shows up in this figure).

Also: the same argon2id hash run bare on one thread (`argon2_bare_ms`), how busy the
hash pool was (`hash_pool_busy`: hash-thread CPU / (threads x wall time)), transactions
and outbox rows per registration, and pipeline_ratio-style figures: `cpu_ratio` (bare
hash CPU / total CPU per registration: the ratio when the pipeline has the cores to
itself) and `pipeline_ratio_est` (from wall time: only meaningful on an idle machine).

For the capacity model (docs/capacity.md): WAL per registration, from the LSN before and
after (`wal_bytes_per_reg_server`: everything the server wrote, others' traffic included)
and from pg_walinspect (`wal_bytes_per_reg_db`: only the records of the run's database
and the commit records of their transactions; `wal_fpi_bytes_per_reg_db`: of which
full-page images, which depend on how recently a checkpoint ran); the growth of every
table with its indexes and TOAST per registration (`pg_bytes_per_reg_TABLE`, the
measured window only, so the empty tables' first pages do not count); the size of the
outbox rows' JSON bodies by routing key (`outbox_body_bytes_ROUTING_KEY`, as published:
the body is the message, less the sealed password the relay strips after publishing).

CPU time is what this measures, because the machine may be shared: wall-clock rates are
printed too, but are only indicative. `name=value` lines last on stdout; progress on
stderr.

    .venv/bin/python bench/pipeline_cost.py [-n 1000] [--clients 16] [--profile DIR]
        [--explain]

--profile DIR: py-spy records the worker and the gateway during the measured window
(raw collapsed stacks and a summary of the top frames in DIR; py-spy samples by pausing
the process, so the CPU figures of a profiled run are a little high).
--explain: before tear-down, EXPLAIN (ANALYZE, BUFFERS) of the worker's hot statements,
each in a transaction that is rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import resource
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import run as bench  # noqa: E402  (bench/run.py: builder, Tracker, LIMITS)
from _cpu import cpu_of, pids_named, threads_of  # noqa: E402
from _load import Client, Sample  # noqa: E402

from tests.faults.common import POSTGRES_URL  # noqa: E402
from tests.faults.harness import Environment, Options  # noqa: E402
from tests.faults.processes import Service  # noqa: E402
from tests.faults.traffic import PASSWORD  # noqa: E402
from workers import mailer, registration  # noqa: E402

PY_SPY = Path(sys.executable).parent / "py-spy"


def progress(message: str) -> None:
    print(f"pipeline_cost: {message}", file=sys.stderr, flush=True)


@dataclass
class Snapshot:
    at: float
    processes: dict[str, float]  # name -> CPU seconds
    worker_threads: dict[int, float]
    postgres_backends: dict[int, float]
    postgres_aux: dict[int, float]  # background processes and the postmaster
    db: dict[str, int]


async def snapshot(service: Service, env: Environment, admin: asyncpg.Connection) -> Snapshot:
    dbname = env.database_url.rsplit("/", 1)[1]
    activity = await admin.fetch(
        "SELECT pid, datname, backend_type FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
    )
    backend_pids = {r["pid"] for r in activity if r["datname"] == dbname}
    # Background processes (walwriter, checkpointer, autovacuum...), not anyone's backends.
    aux_pids = {r["pid"] for r in activity if r["backend_type"] != "client backend"}
    stats = await admin.fetchrow(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
        "tup_returned, tup_fetched FROM pg_stat_database WHERE datname = $1",
        dbname,
    )
    postgres_all = {pid: cpu_of(pid) or 0.0 for pid in pids_named("postgres")}
    postmaster = [pid for pid in postgres_all if pid not in {r["pid"] for r in activity}]
    worker = service.workers[0].popen.pid
    processes = {
        "gateway": cpu_of(service.gateway.popen.pid),
        "worker": cpu_of(worker),
        "sink": cpu_of(env.sink._process.pid),
        "rabbitmq": sum(cpu_of(pid) or 0.0 for pid in pids_named("beam.smp")),
    }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    processes["load"] = usage.ru_utime + usage.ru_stime
    return Snapshot(
        at=time.perf_counter(),
        processes=processes,
        worker_threads=threads_of(worker),
        postgres_backends={pid: postgres_all.get(pid, 0.0) for pid in backend_pids},
        postgres_aux={
            pid: postgres_all[pid] for pid in (*aux_pids, *postmaster) if pid in postgres_all
        },
        db=dict(stats),
    )


def delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent by the ids of `after` since `before` (new ones count from zero)."""
    return sum(value - before.get(key, 0.0) for key, value in after.items())


async def table_bytes(conn: asyncpg.Connection) -> dict[str, int]:
    """Bytes on disk of every table of the public schema, its indexes and TOAST included."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
    )
    return {r["relname"]: r["bytes"] for r in rows}


async def database_wal(conn: asyncpg.Connection, start: str, end: str) -> tuple[int, int]:
    """(bytes, full-page-image bytes) of the WAL records between two LSNs that touch this
    connection's database, plus the commit and other block-less records of the same
    transactions (pg_walinspect; the range must still be on disk)."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    row = await conn.fetchrow(
        """
        WITH records AS (
            SELECT xid, record_length, fpi_length,
                   block_ref LIKE '%/' || (SELECT oid FROM pg_database
                                            WHERE datname = current_database()) || '/%'
                       AS ours
              FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn)
        ), our_xids AS (
            SELECT DISTINCT xid FROM records WHERE ours AND xid <> '0'
        )
        SELECT coalesce(sum(record_length), 0) AS bytes, coalesce(sum(fpi_length), 0) AS fpi
          FROM records
         WHERE ours OR xid IN (SELECT xid FROM our_xids)
        """,
        start,
        end,
    )
    return row["bytes"], row["fpi"]


# --- bare argon2 ---------------------------------------------------------------------------


def argon2_bare_s(count: int) -> float:
    """Thread CPU seconds of one argon2id hash at the Settings parameters, on one thread."""
    argon2 = bench.hasher()
    argon2.hash(PASSWORD)  # first allocation
    started = time.thread_time()
    for _ in range(count):
        argon2.hash(PASSWORD)
    return (time.thread_time() - started) / count


# --- load ----------------------------------------------------------------------------------


async def push(
    client: Client, tracker: bench.Tracker, build, count: int, clients: int, timeout: float
) -> tuple[int, float]:
    """`count` registrations through `clients` closed-loop clients; (completed, seconds
    from the first request to the last completion)."""
    counter = iter(range(count))
    completed: list[float] = []
    started = time.perf_counter()

    async def one_client() -> None:
        conn = None
        for n in counter:
            data, email = build(n)
            sample = Sample(email, time.perf_counter())
            conn = await client.send(conn, data, sample)
            if sample.status != 202:
                progress(f"answer {sample.status} for {email}")
                continue
            if await tracker.wait(email, timeout):
                completed.append(tracker.completed_at(email))
            else:
                progress(f"{email} not completed within {timeout:.0f}s")
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return len(completed), (max(completed) if completed else time.perf_counter()) - started


# --- py-spy --------------------------------------------------------------------------------


def start_profilers(
    directory: Path, pids: dict[str, int], seconds: float, *, gil: bool = False
) -> list:
    directory.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in pids.items():
        out = directory / f"{name}.txt"
        argv = [
            str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds)),
            "--rate", "200", "--format", "raw", "--threads", "-o", str(out),
        ] + (["--gil"] if gil else [])  # fmt: skip
        procs.append(
            (name, out, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        )
    return procs


def summarise_profile(path: Path, top: int = 25) -> str:
    """Top frames by own samples and by inclusive samples, from py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    per_thread: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        per_thread[frames[0]] += n
        frames = frames[1:]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{path.name}: {total} samples", "threads:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in per_thread.most_common()]
    lines.append("own (self) time:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive time:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


# --- EXPLAIN ------------------------------------------------------------------------------


async def hot_statements(conn: asyncpg.Connection) -> list[tuple[str, str, tuple]]:
    """(title, SQL, arguments) of every statement a registration makes the workers run,
    as the workers' modules spell them, with arguments from the run's last registration
    (fresh ids for inserts)."""
    request = await conn.fetchrow(
        "SELECT r.id, r.tenant_id, r.user_id, u.email FROM registration_requests r "
        "JOIN users u ON u.id = r.user_id ORDER BY r.decided_at DESC LIMIT 1"
    )
    email = await conn.fetchrow("SELECT id, tenant_id FROM emails ORDER BY created_at DESC LIMIT 1")
    rid, tid, uid = request["id"], request["tenant_id"], request["user_id"]
    fresh = uuid.uuid4()
    outbox_ids = [
        r["id"] for r in await conn.fetch("SELECT id FROM outbox ORDER BY id DESC LIMIT 3")
    ]
    body = '{"data": {"attempts": 0}}'  # jsonb as text: this connection has no JSON codec
    return [
        (
            "registration: status before hashing (pool.fetchval)",
            "SELECT status FROM registration_requests WHERE id = $1",
            (rid,),
        ),
        (
            "registration: FIRST_AND_LOCK (processed message + request row lock)",
            registration.FIRST_AND_LOCK,
            ("registration", fresh, rid),
        ),
        (
            "registration: INSERT_USER (user + default role, ON CONFLICT DO NOTHING)",
            registration.INSERT_USER,
            (
                fresh,
                tid,
                f"explain-{fresh}",
                f"explain-{fresh}@example.com",
                "x",
                "en",
                "self",
                "",
                False,
                ["user"],
            ),
        ),
        (
            "registration: DECIDE (request, token, email row, 2 outbox rows, NOTIFY)",
            registration.DECIDE,
            (
                uid,
                rid,
                fresh,
                uid,
                b"x" * 32,
                dt.timedelta(hours=48),
                "https://x",
                fresh,
                tid,
                "activation",
                "x@example.com",
                "en",
                "{}",
                fresh,
                "user.registered",
                body,
                uuid.uuid4(),
                "email.requested",
                body,
                "registrar_decided",
                str(rid),
            ),
        ),
        (
            "relay: claim a batch",
            "SELECT id, event_id, routing_key, body FROM outbox "
            "WHERE published_at IS NULL AND parked_at IS NULL AND available_at <= now() "
            "ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
            (),
        ),
        (
            "relay: mark published",
            "UPDATE outbox SET published_at = now(), body = body #- '{data,sealedPassword}' "
            "WHERE id = ANY($1::bigint[])",
            (outbox_ids,),
        ),
        (
            "mailer: CLAIM (lock, lease, and the tenant)",
            mailer.CLAIM,
            (email["id"], email["tenant_id"], 120.0),
        ),
        (
            "mailer: RECORD_SENT (sent + email.delivered)",
            mailer.RECORD_SENT,
            (email["id"], fresh, "email.delivered", body),
        ),
    ]


async def explain(database_url: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the hot statements, each on real rows of this run
    and rolled back."""
    conn = await asyncpg.connect(database_url)
    out = []
    try:
        for title, sql, args in await hot_statements(conn):
            tr = conn.transaction()
            await tr.start()
            try:
                rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args)
                out.append(f"-- {title}\n{sql.strip()}\n" + "\n".join(r[0] for r in rows))
            except asyncpg.PostgresError as exc:
                out.append(f"-- {title}: {exc!r}")
            finally:
                await tr.rollback()
    finally:
        await conn.close()
    return "\n\n".join(out)


# --- main ----------------------------------------------------------------------------------


async def main(args) -> int:
    progress(f"argon2id bare: {args.bare} hashes on one thread")
    bare = await asyncio.to_thread(argon2_bare_s, args.bare)
    progress(f"argon2id bare: {bare * 1000:.1f} ms CPU per hash")
    options = Options(log_level=args.log_level, process_env=bench.LIMITS + tuple(args.env))
    figures: dict[str, float] = {"argon2_bare_ms": bare * 1000}
    async with Environment(options) as env:
        service = Service(env.env, env.root / "cost", workers=1)
        tracker = bench.Tracker(env)
        admin = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
        profilers = []
        try:
            await service.start()
            await tracker.start()
            client = Client("127.0.0.1", service.port)
            api_key = env.tenant["apiKey"]
            progress(f"warm-up: {args.warmup} registrations")
            warm = bench.builder(api_key, f"w{uuid.uuid4().hex[:6]}.")
            await push(client, tracker, warm, args.warmup, args.clients, 60)
            await asyncio.sleep(2)  # let the warm-up's last relay passes and stats settle
            worker_pid = service.workers[0].popen.pid
            run_db = await asyncpg.connect(env.database_url)
            tables_before = await table_bytes(run_db)
            lsn_before = await admin.fetchval("SELECT pg_current_wal_lsn()::text")
            before = await snapshot(service, env, admin)
            if args.profile:
                seconds = args.n / args.expected_rps
                profilers = start_profilers(
                    args.profile,
                    {"worker": worker_pid, "gateway": service.gateway.popen.pid},
                    seconds,
                    gil=args.gil,
                )
            progress(f"measuring: {args.n} registrations, {args.clients} closed-loop clients")
            build = bench.builder(api_key, f"c{uuid.uuid4().hex[:6]}.")
            done, elapsed = await push(client, tracker, build, args.n, args.clients, 120)
            after = await snapshot(service, env, admin)
            lsn_after = await admin.fetchval("SELECT pg_current_wal_lsn()::text")
            # pg_stat_database is flushed by each backend at most once a second (idle:
            # within 10 s): read the transaction counts again once they have settled.
            await asyncio.sleep(11)
            settled = await admin.fetchrow(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated "
                "FROM pg_stat_database WHERE datname = $1",
                env.database_url.rsplit("/", 1)[1],
            )
            try:
                outbox = await run_db.fetch(
                    "SELECT routing_key, count(*) AS n, avg(octet_length(body::text)) AS bytes "
                    "FROM outbox GROUP BY 1 ORDER BY 1"
                )
                tables_after = await table_bytes(run_db)
                wal_server = await admin.fetchval(
                    "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)",
                    lsn_after,
                    lsn_before,
                )
                try:
                    wal_db, wal_fpi = await database_wal(run_db, lsn_before, lsn_after)
                except asyncpg.PostgresError as exc:  # no pg_walinspect (PostgreSQL < 15)
                    progress(f"WAL of the database not measured: {exc!r}")
                    wal_db = wal_fpi = float("nan")
            finally:
                await run_db.close()
            for name, out, proc in profilers:
                _, err = await asyncio.to_thread(proc.communicate)
                if out.exists():
                    summary = summarise_profile(out)
                    (args.profile / f"{name}.summary.txt").write_text(summary + "\n")
                    progress(f"py-spy {name}: {args.profile / (name + '.summary.txt')}")
                else:
                    progress(f"py-spy {name} failed: {err.decode()[-500:]}")
            if args.explain:
                text = await explain(env.database_url)
                target = args.explain_out or (BENCH / "explain.txt")
                target.write_text(text + "\n")
                progress(f"EXPLAIN ANALYZE of the hot statements: {target}")
        finally:
            await admin.close()
            await tracker.stop()
            codes = service.stop()
            if any(codes.values()):
                progress(f"processes exited {codes}; logs in {service.log_dir}")
            else:
                env.remove_logs()

    n = max(done, 1)
    per = {name: (after.processes[name] - before.processes[name]) / n for name in after.processes}
    worker_total = per["worker"]
    threads = delta(before.worker_threads, after.worker_threads)
    loop_tid = worker_pid
    loop = after.worker_threads.get(loop_tid, 0.0) - before.worker_threads.get(loop_tid, 0.0)
    hash_threads = threads - loop
    postgres_backends = delta(before.postgres_backends, after.postgres_backends) / n
    postgres_aux = delta(before.postgres_aux, after.postgres_aux) / n
    figures.update(
        registrations=done,
        seconds=elapsed,
        gateway_ms=per["gateway"] * 1000,
        worker_ms=worker_total * 1000,
        worker_loop_ms=loop / n * 1000,
        worker_hash_threads_ms=hash_threads / n * 1000,
        postgres_backends_ms=postgres_backends * 1000,
        postgres_aux_ms=postgres_aux * 1000,
        rabbitmq_ms=per["rabbitmq"] * 1000,
        sink_ms=per["sink"] * 1000,
        load_ms=per["load"] * 1000,
    )
    total = (
        per["gateway"]
        + worker_total
        + postgres_backends
        + postgres_aux
        + per["rabbitmq"]
        + per["sink"]
        + per["load"]
    )
    hashing = hash_threads / n
    figures["total_ms"] = total * 1000
    figures["non_hash_ms"] = (total - hashing) * 1000
    figures["hash_share"] = hashing / total if total else float("nan")
    # What pipeline_ratio comes to when the pipeline has the cores to itself and keeps
    # them busy: registrations/s = cores / total CPU per registration, hash rate = cores /
    # bare hash CPU. Immune to another user's load, unlike the wall-clock figure below.
    figures["cpu_ratio"] = bare / total if total else float("nan")
    figures["hash_pool_busy"] = hash_threads / (args.hash_threads * elapsed)
    figures["pipeline_rps"] = done / elapsed
    # make bench's ratio divides by the bare hash rate on all cores.
    cores = os.cpu_count() or 1
    figures["pipeline_ratio_est"] = (done / elapsed) / (cores / bare)
    commits = settled["xact_commit"] - before.db["xact_commit"]
    figures["pg_xacts_per_reg"] = commits / n
    figures["pg_rows_written_per_reg"] = (
        settled["tup_inserted"]
        - before.db["tup_inserted"]
        + settled["tup_updated"]
        - before.db["tup_updated"]
    ) / n
    total_rows = sum(r["n"] for r in outbox)
    regs = args.warmup + args.n
    for row in outbox:
        figures[f"outbox_{row['routing_key'].replace('.', '_')}_per_reg"] = row["n"] / regs
    figures["outbox_rows_per_reg"] = total_rows / regs
    for row in outbox:
        figures[f"outbox_body_bytes_{row['routing_key'].replace('.', '_')}"] = float(row["bytes"])
    figures["wal_bytes_per_reg_server"] = float(wal_server) / n
    figures["wal_bytes_per_reg_db"] = wal_db / n
    figures["wal_fpi_bytes_per_reg_db"] = wal_fpi / n
    grown = {
        name: tables_after[name] - tables_before.get(name, 0)
        for name in tables_after
        if name != "schema_migrations"
    }
    for name in sorted(grown):
        if grown[name]:
            figures[f"pg_bytes_per_reg_{name}"] = grown[name] / n
    figures["pg_bytes_per_reg"] = sum(grown.values()) / n
    for name, value in figures.items():
        print(f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}")
    return 0 if done == args.n else 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="registrations measured")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients")
    parser.add_argument("--bare", type=int, default=50, help="bare argon2id hashes timed")
    parser.add_argument("--log-level", default="INFO", help="of the registrar processes")
    parser.add_argument("--profile", type=Path, help="py-spy the worker and gateway into DIR")
    parser.add_argument(
        "--gil", action="store_true", help="--profile: sample only the thread holding the GIL"
    )
    parser.add_argument("--expected-rps", type=float, default=45.0, help="sizes --profile")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--explain-out", type=Path)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=lambda s: tuple(s.split("=", 1)),
        help="REGISTRAR_NAME=value for the registrar processes (repeatable)",
    )
    args = parser.parse_args(argv)
    threads = dict(args.env).get("REGISTRAR_HASH_THREADS")
    args.hash_threads = int(threads) if threads else (os.cpu_count() or 1)
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
