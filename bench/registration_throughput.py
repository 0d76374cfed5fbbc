"""Registrations per second end to end (HTTP -> RabbitMQ -> worker -> PostgreSQL) with one
registration worker process against two competing ones. Real gateway and worker
processes on localhost, a throwaway database and AMQP prefix; variants interleaved over
rounds, medians and ratios from one run. On a 2-core machine argon2id hashing bounds it.

    .venv/bin/python bench/registration_throughput.py [--users 150] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from _report import free_port, print_ratios

from service import db
from service.sealing import generate_key_pair

POSTGRES = os.environ.get("REGISTRAR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REGISTRAR = str(Path(sys.executable).parent / "registrar")
CONCURRENCY = 20


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


async def register_all(base: str, api_key: str, count: int, pool: asyncpg.Pool) -> float:
    """POST `count` registrations (respond-async), wait until all are decided; seconds."""
    limit = asyncio.Semaphore(CONCURRENCY)
    tag = uuid.uuid4().hex[:6]

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        body = {
            "activationUrl": "https://app.example/{activationToken}",
            "challengeIdentifier": "-",
            "challengeResponse": "-",
            "email": f"b{tag}{i}@example.com",
            "userName": f"b{tag}{i}",
            "password": "bench password",
            "confirmPassword": "bench password",
        }
        async with (
            limit,
            http.post(
                f"{base}/{api_key}/register", json=body, headers={"Prefer": "respond-async"}
            ) as response,
        ):
            assert response.status == 202, response.status

    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(http, i) for i in range(count)))
    while (
        await pool.fetchval("SELECT count(*) FROM users WHERE user_name LIKE $1", f"b{tag}%")
        < count
    ):
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def run_variant(workers: int, count: int, env: dict[str, str], api_key: str, pool) -> float:
    port = free_port()
    procs = [
        subprocess.Popen(
            [REGISTRAR, "gateway", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    procs += [
        subprocess.Popen(
            [REGISTRAR, "worker", "registration", "outbox"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz")
        await asyncio.sleep(1.0)  # let every worker's consumer attach
        return await register_all(f"http://127.0.0.1:{port}", api_key, count, pool)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


async def main(count: int, rounds: int) -> None:
    run = uuid.uuid4().hex[:8]
    url = f"{POSTGRES}/registrar_bench_{run}"
    public, private = generate_key_pair()
    env = {
        **os.environ,
        "REGISTRAR_DATABASE_URL": url,
        "REGISTRAR_AMQP_PREFIX": f"bench_{run}",
        "REGISTRAR_SEAL_PUBLIC_KEY": public,
        "REGISTRAR_SEAL_PRIVATE_KEY": private,
        "REGISTRAR_RATE_LIMIT_BURST": "100000",
        "REGISTRAR_LOG_LEVEL": "WARNING",
    }
    await db.migrate(url)
    pool = await db.create_pool(url)
    tenant = json.loads(
        subprocess.run(
            [
                REGISTRAR,
                "tenant",
                "create",
                "bench",
                "--activation-url-prefix",
                "https://app.example/",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        for round_no in range(1, rounds + 1):
            for workers in rates:
                seconds = await run_variant(workers, count, env, tenant["apiKey"], pool)
                rates[workers].append(count / seconds)
            print(f"round {round_no}/{rounds} done", file=sys.stderr)
    finally:
        await pool.close()
        await cleanup(url, f"bench_{run}")
    print_ratios(
        f"{count} registrations x {rounds} rounds, {CONCURRENCY} concurrent clients "
        "(median, POST until decided)",
        {f"{workers} registration worker process(es)": v for workers, v in rates.items()},
        unit="registrations/s",
    )


async def cleanup(url: str, prefix: str) -> None:
    import aio_pika

    from service.amqp import Names
    from service.settings import Settings

    connection = await aio_pika.connect(os.environ.get("REGISTRAR_AMQP_URL", Settings().amqp_url))
    channel = await connection.channel()
    names = Names(prefix)
    for queue in names.all_queues(Settings().retry_delays_s):
        await channel.queue_delete(queue)
    for exchange in names.exchanges:
        await channel.exchange_delete(exchange)
    await connection.close()
    admin = await asyncpg.connect(f"{POSTGRES}/postgres")
    await admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.rounds))
