"""Do transactions that NOTIFY commit one at a time? Small write transactions per second,
with and without `pg_notify` in them.

PostgreSQL serializes the commits of transactions that queued a notification (a global
lock taken before commit and held until the transaction ends): a registration's deciding
transaction notifies (`registrar_decided`, and the outbox trigger's `registrar_outbox`),
and so does recording a sent email. The capacity model (docs/capacity.md) needs to know
where that caps the rate of one primary, so this measures it on the server of the tests:
`--connections` clients each run `INSERT` of one small row (+ `SELECT pg_notify(...)`)
and `COMMIT` in a loop for `--seconds`, alternating plain and notifying rounds, in a
database of its own (created and dropped). Medians over the rounds; `name=value` lines
last on stdout. The server is shared: others' load lowers both figures alike.

    .venv/bin/python bench/notify_commits.py [--connections 16] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

import asyncpg

POSTGRES_URL = os.environ.get("REGISTRAR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def progress(message: str) -> None:
    print(f"notify_commits: {message}", file=sys.stderr, flush=True)


async def commits_per_s(url: str, connections: int, seconds: float, notify: bool) -> float:
    statement = "INSERT INTO t (v) VALUES ($1)"
    done = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        conn = await asyncpg.connect(url)
        try:
            while time.perf_counter() < stop:
                async with conn.transaction():
                    await conn.execute(statement, done)
                    if notify:
                        await conn.execute("SELECT pg_notify('bench_notify_commits', '')")
                done += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return done / (time.perf_counter() - started)


async def main(args) -> int:
    name = f"registrar_notify_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_URL}/{name}"
    plain, notifying = [], []
    try:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v bigint)")
        settings = {
            s: await conn.fetchval(f"SHOW {s}") for s in ("synchronous_commit", "commit_delay")
        }
        await conn.close()
        for n in range(args.rounds):
            plain.append(await commits_per_s(url, args.connections, args.seconds, False))
            notifying.append(await commits_per_s(url, args.connections, args.seconds, True))
            progress(f"round {n + 1}: plain {plain[-1]:.0f}/s, notifying {notifying[-1]:.0f}/s")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    progress(f"server settings: {settings}")
    figures = {
        "plain_commits_per_s": statistics.median(plain),
        "notify_commits_per_s": statistics.median(notifying),
        "load_average_1m": os.getloadavg()[0],
    }
    figures["notify_ratio"] = figures["notify_commits_per_s"] / figures["plain_commits_per_s"]
    for key, value in figures.items():
        print(f"{key}={value:.3f}")
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
