"""Where the door's time goes: CPU milliseconds per accepted registration, per process.

A gateway without workers takes `Prefer: respond-async` registrations from 32 closed-loop
connections (as `make bench` measures door_rps); meanwhile the CPU time of the gateway,
of every PostgreSQL and RabbitMQ process and of the load generator is read from /proc.
With --profile, py-spy samples the gateway for the same window (collapsed stacks, for
flame graphs or `bench/door_cost.py --top FILE`).

    .venv/bin/python bench/door_cost.py [--seconds 10] [--profile var/door.txt]
    .venv/bin/python bench/door_cost.py --top var/door.txt
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _cpu import CpuMeter, pids_named  # noqa: E402
from _load import Client  # noqa: E402
from run import LIMITS, builder, ok, progress  # noqa: E402

from tests.faults.harness import Environment, Options  # noqa: E402
from tests.faults.processes import Service  # noqa: E402


def py_spy(pid: int, seconds: float, output: str) -> subprocess.Popen:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds))]
    argv += ["--format", "raw", "--rate", "200", "--output", output, "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top(path: str, limit: int = 25) -> None:
    """Share of samples per function (inclusive, each function once per stack)."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for frame in set(stack.split(";")):
            inclusive[frame] += n
    for frame, n in inclusive.most_common(limit):
        print(f"{100 * n / total:5.1f}%  {frame}")


async def intake_statements(url: str) -> tuple[float, float]:
    """(statements, requests recorded) so far, from the gateway's /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()

    def value(name: str) -> float:
        match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    return value("registrar_intake_batch_size_count"), value("registrar_intake_batch_size_sum")


async def postgres_pids(env: Environment) -> list[int]:
    """The backends serving this run's database, and the server's own processes (WAL
    writer, checkpointer, ...), not other clients' backends on a shared server."""
    conn = await asyncpg.connect(env.database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND (datname = current_database() OR backend_type <> 'client backend')"
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def measure(seconds: float, profile: str | None) -> dict[str, float]:
    async with Environment(Options(process_env=LIMITS)) as env:
        service = Service(env.env, env.root / "door", workers=0)
        try:
            await service.start()
            client = Client("127.0.0.1", service.port)
            build = builder(env.tenant["apiKey"], f"c{uuid.uuid4().hex[:6]}.")
            await client.closed_loop(build, 32, 2.0)  # warm-up: pool, JIT-less caches
            client.samples.clear()
            meter = CpuMeter(
                {
                    "gateway": [service.gateway.popen.pid],
                    "postgres": await postgres_pids(env),
                    "rabbitmq": pids_named("beam.smp"),
                    "loadgen": [os.getpid()],
                }
            )
            spy = py_spy(service.gateway.popen.pid, seconds, profile) if profile else None
            statements_before, recorded_before = await intake_statements(service.url)
            meter.start()
            elapsed = await client.closed_loop(build, 32, seconds)
            spent = meter.stop()
            statements, recorded = await intake_statements(service.url)
            statements -= statements_before
            recorded -= recorded_before
            if spy is not None:
                spy.wait(timeout=seconds + 30)
            accepted = len(ok(client.samples))
        finally:
            service.stop()
        env.remove_logs()
    per_statement = recorded / statements if statements else float("nan")  # nan: no intake
    figures = {"door_rps": accepted / elapsed, "requests_per_statement": per_statement}
    for name, cpu in spent.items():
        figures[f"{name}_ms_per_request"] = 1000 * cpu / max(accepted, 1)
    figures["total_ms_per_request"] = sum(
        v for k, v in figures.items() if k.endswith("_ms_per_request")
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", help="write py-spy collapsed stacks of the gateway here")
    parser.add_argument("--top", help="summarise a collapsed-stacks file and exit")
    args = parser.parse_args()
    if args.top:
        top(args.top)
        return
    if args.profile:
        Path(args.profile).parent.mkdir(parents=True, exist_ok=True)
    figures = asyncio.run(measure(args.seconds, args.profile))
    progress("door cost measured")
    for name, value in figures.items():
        print(f"{name}={value:.3f}")


if __name__ == "__main__":
    main()
