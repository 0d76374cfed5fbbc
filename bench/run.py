"""`make bench`: every figure of SPEC §8 measured in one run, on real processes.

Phases (progress on stderr; the `name=value` lines last on stdout):

1. hash_rate — bare argon2id (Settings defaults) in a pool of os.cpu_count() processes.
2. door — a gateway with no workers, `Prefer: respond-async`, 32 connections back to
   back; then the same load against bench/_door_stub.py (a minimal aiohttp app answering
   202). Its own database and prefix, dropped before the pipeline phases (the outbox would
   otherwise hand these requests to the workers later).
3. With gateway + `registrar worker all` + the SMTP sink of tests/faults (fresh database
   and prefix): pipeline (16 closed-loop clients, each POSTs and waits until its
   `user.registered` event and activation email are seen), accept latency (open loop at
   half door_rps), e2e latency (open loop at half pipeline_rps, POST -> event on a queue
   bound to `{prefix}.events`), burst (5,000 at once).

Appends a row to bench/RESULTS.md and draws bench/burst.png. A phase that runs out of
time prints what it measured so far and says so on stderr.

    .venv/bin/python bench/run.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402
from _load import Client, Sample  # noqa: E402
from _report import quantile_ms  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402

from service.settings import Settings  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.faults.harness import Environment, Options  # noqa: E402
from tests.faults.processes import Service  # noqa: E402
from tests.faults.traffic import ACTIVATION_URL, PASSWORD  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
CHART = BENCH / "burst.png"
FIGURES = (
    "hash_rate",
    "pipeline_rps",
    "pipeline_ratio",
    "door_rps",
    "door_ratio",
    "accept_p99_ms",
    "e2e_p99_ms",
    "burst_accept_s",
    "burst_complete_s",
    "burst_lost",
)
DOOR_CONNECTIONS = 32  # door_rps: closed-loop connections, back to back
LIMITS = (
    ("REGISTRAR_RATE_LIMIT_BURST", "100000000"),
    ("REGISTRAR_RATE_LIMIT_PER_MINUTE", "100000000"),
    ("REGISTRAR_TENANT_RATE_LIMIT_BURST", "100000000"),
    ("REGISTRAR_TENANT_RATE_LIMIT_PER_MINUTE", "100000000"),
    ("REGISTRAR_QUEUE_MAX_LENGTH", "10000000"),
)


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- 1. the hash limit -------------------------------------------------------------------


def _hash_for(seconds: float) -> int:
    argon2 = hasher()
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        argon2.hash(PASSWORD)
        count += 1
    return count


def hash_rate(seconds: float) -> float:
    cpus = os.cpu_count() or 1
    with concurrent.futures.ProcessPoolExecutor(cpus) as pool:
        list(pool.map(_hash_for, [0.5] * cpus))  # warm-up: imports, first allocation
        started = time.perf_counter()
        counts = list(pool.map(_hash_for, [seconds] * cpus))
        elapsed = time.perf_counter() - started
    return sum(counts) / elapsed


# --- requests and what became of them ---------------------------------------------------


def builder(api_key: str, tag: str):
    """n -> (raw POST /{apiKey}/register with respond-async, its email)."""
    head = (
        f"POST /{api_key}/register HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nPrefer: respond-async\r\nContent-Length: "
    )

    def build(n: int) -> tuple[bytes, str]:
        name = f"{tag}{n}"
        body = json.dumps(
            {
                "activationUrl": ACTIVATION_URL,
                "challengeIdentifier": "x",
                "challengeResponse": "x",
                "confirmPassword": PASSWORD,
                "email": f"{name}@example.com",
                "password": PASSWORD,
                "userName": name,
            }
        ).encode()
        return f"{head}{len(body)}\r\n\r\n".encode() + body, f"{name}@example.com"

    return build


class Tracker:
    """When each address's `user.registered` event and activation email were seen."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.events: dict[str, float] = {}
        self.emails: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future] = {}
        self._offset = 0
        self._poller: asyncio.Task | None = None
        self._channel = None

    async def start(self) -> None:
        channel = await self.env.amqp.channel()
        await channel.set_qos(prefetch_count=500)
        exchange = await channel.get_exchange(f"{self.env.prefix}.events")
        queue = await channel.declare_queue(f"{self.env.prefix}.bench.events", durable=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_event, no_ack=True)
        self._channel = channel
        self._poller = asyncio.create_task(self._poll_sink())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if message.routing_key != "user.registered":
            return
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            email = json.loads(message.body)["data"]["email"].lower()
            self.events.setdefault(email, time.perf_counter())
            self._check(email)

    async def _poll_sink(self) -> None:
        """The sink appends one JSON line per recipient; read what is new every 20 ms."""
        path = self.env.sink.record
        while True:
            with path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            self._offset += end
            now = time.perf_counter()
            for line in chunk[:end].splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    email = json.loads(line)["to"]
                    self.emails.setdefault(email, now)
                    self._check(email)
            await asyncio.sleep(0.02)

    def completed_at(self, email: str) -> float | None:
        if email in self.events and email in self.emails:
            return max(self.events[email], self.emails[email])
        return None

    def _check(self, email: str) -> None:
        waiter = self.waiters.get(email)
        if waiter is not None and not waiter.done() and self.completed_at(email) is not None:
            waiter.set_result(None)

    async def wait(self, email: str, timeout: float) -> bool:
        if self.completed_at(email) is not None:
            return True
        waiter = self.waiters[email] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiters.pop(email, None)

    async def drain(self, emails: list[str], timeout: float, *, what: str, stall_s=30.0) -> bool:
        """Until every address completed; False after `timeout` or `stall_s` without
        progress (then says so on stderr)."""
        started = last_change = time.perf_counter()
        last_done = -1
        last_report = started
        while True:
            done = sum(self.completed_at(e) is not None for e in emails)
            now = time.perf_counter()
            if done == len(emails):
                return True
            if done != last_done:
                last_done, last_change = done, now
            if now - started > timeout or now - last_change > stall_s:
                progress(
                    f"{what}: gave up waiting after {now - started:.0f}s with "
                    f"{done}/{len(emails)} completed (figure is as measured so far)"
                )
                return False
            if now - last_report > 10:
                last_report = now
                progress(f"{what}: {done}/{len(emails)} completed")
            await asyncio.sleep(0.1)


def ok(samples: list[Sample]) -> list[Sample]:
    bad = [s for s in samples if s.status != 202]
    if bad:
        kinds = sorted({str(s.status) for s in bad})
        progress(f"  {len(bad)} of {len(samples)} answers were not 202: {kinds}")
    return [s for s in samples if s.status == 202]


# --- 2. the door ------------------------------------------------------------------------


async def wait_port(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the door stub exited")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


async def door_rate(client: Client, build, seconds: float, warm_s: float = 1.0) -> float:
    """202/s from DOOR_CONNECTIONS closed-loop connections for `seconds`, after `warm_s`
    of the same load unmeasured; `client.samples` keeps the measured answers."""
    if warm_s > 0:
        await client.closed_loop(build, DOOR_CONNECTIONS, warm_s)
    client.samples.clear()
    elapsed = await client.closed_loop(build, DOOR_CONNECTIONS, seconds)
    return len(ok(client.samples)) / elapsed


async def door_phase(options: Options, seconds: float) -> tuple[float, float]:
    """(gateway 202/s without workers, stub 202/s), 32 connections, closed loop."""
    async with Environment(options) as env:
        service = Service(env.env, env.root / "door", workers=0)
        try:
            await service.start()
            client = Client("127.0.0.1", service.port)
            build = builder(env.tenant["apiKey"], f"d{uuid.uuid4().hex[:6]}.")
            door = await door_rate(client, build, seconds)
            progress(f"door: gateway without workers {door:.1f} 202/s")
        finally:
            service.stop()
        env.remove_logs()
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, str(BENCH / "_door_stub.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_port(port, stub)
        reference = await door_rate(Client("127.0.0.1", port), builder("stub", "s"), seconds)
        progress(f"door: minimal aiohttp app {reference:.1f} 202/s")
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    return door, reference


# --- 3. the pipeline --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(
    env: Environment,
    what: str,
    process_env: dict[str, str] | None = None,
    *,
    remove_logs: bool = False,
):
    """A gateway and one `worker all` (ready), the event tracker and a client; stopped on
    the way out, saying so when a process exited with an error (its logs are kept; with
    `remove_logs`, clean runs' logs are removed)."""
    service = Service(process_env or env.env, env.root / what, workers=1)
    tracker = Tracker(env)
    try:
        await service.start()
        await tracker.start()
        yield service, tracker, Client("127.0.0.1", service.port)
    finally:
        await tracker.stop()
        codes = service.stop()
        if any(codes.values()):
            progress(f"{what}: processes exited {codes}; logs in {service.log_dir}")
        elif remove_logs:
            env.remove_logs()


async def pipeline_phases(options: Options, args, door_rps: float) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with (
        Environment(options) as env,
        running(env, "pipeline", remove_logs=True) as (_, tracker, client),
    ):
        api_key = env.tenant["apiKey"]

        # Closed loop: 16 clients, each POSTs and waits for its completion.
        progress(f"pipeline: 16 closed-loop clients for {args.pipeline_s:.0f}s")
        build = builder(api_key, f"p{uuid.uuid4().hex[:6]}.")
        completed: list[float] = []

        async def until_complete(sample: Sample) -> None:
            if sample.status == 202 and await tracker.wait(sample.email, 60):
                completed.append(tracker.completed_at(sample.email))

        warm = builder(api_key, f"w{uuid.uuid4().hex[:6]}.")
        await client.closed_loop(warm, 16, 3.0, after=until_complete)  # warm-up
        completed.clear()
        started = time.perf_counter()
        await client.closed_loop(build, 16, args.pipeline_s, after=until_complete)
        window = [t for t in completed if t <= started + args.pipeline_s]
        figures["pipeline_rps"] = len(window) / args.pipeline_s
        progress(f"pipeline: {figures['pipeline_rps']:.1f} completed registrations/s")

        # Open loop at half door_rps, respond-async latency.
        rate = max(1.0, door_rps / 2)
        progress(f"accept: open loop at {rate:.0f}/s for {args.accept_s:.0f}s")
        client.samples.clear()
        build = builder(api_key, f"a{uuid.uuid4().hex[:6]}.")
        await client.open_loop(build, rate, args.accept_s)
        accepted = ok(client.samples)
        figures["accept_p99_ms"] = quantile_ms([s.done - s.start for s in accepted], 99)
        progress(f"accept: p99 {figures['accept_p99_ms']:.1f} ms; draining the backlog")
        await tracker.drain(
            [s.email for s in accepted], args.drain_s, what="accept backlog", stall_s=30
        )

        # Open loop at half pipeline_rps, POST -> user.registered.
        rate = max(1.0, figures["pipeline_rps"] / 2)
        progress(f"e2e: open loop at {rate:.1f}/s for {args.e2e_s:.0f}s")
        client.samples.clear()
        build = builder(api_key, f"e{uuid.uuid4().hex[:6]}.")
        await client.open_loop(build, rate, args.e2e_s)
        accepted = ok(client.samples)
        await tracker.drain([s.email for s in accepted], 60, what="e2e")
        latencies = [
            tracker.events[s.email] - s.start for s in accepted if s.email in tracker.events
        ]
        if len(latencies) < len(accepted):
            progress(f"e2e: {len(accepted) - len(latencies)} events never seen")
        figures["e2e_p99_ms"] = quantile_ms(latencies, 99)
        progress(f"e2e: p99 {figures['e2e_p99_ms']:.1f} ms")

        # Burst.
        progress(f"burst: {args.burst} registrations at once")
        client.samples.clear()
        build = builder(api_key, f"b{uuid.uuid4().hex[:6]}.")
        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                client.burst(build, args.burst, args.burst_connections), args.drain_s
            )
        except TimeoutError:
            progress(f"burst: not all answered within {args.drain_s:.0f}s")
        samples = list(client.samples)
        accepted = ok(samples)
        answered = [s.done for s in samples]
        figures["burst_accept_s"] = (max(answered) - started) if answered else float("nan")
        progress(f"burst: {len(accepted)} accepted in {figures['burst_accept_s']:.1f}s; draining")
        emails = [s.email for s in accepted]
        await tracker.drain(emails, args.drain_s, what="burst", stall_s=60)
        done = [tracker.completed_at(e) for e in emails]
        done = [t for t in done if t is not None]
        figures["burst_complete_s"] = (max(done) - started) if done else float("nan")
        figures["burst_lost"] = len(accepted) - len(done)
        if len(accepted) < args.burst:
            progress(f"burst: {args.burst - len(accepted)} requests were not accepted")
        draw_burst([s.done - started for s in accepted], [t - started for t in done])
    return figures


# --- output -----------------------------------------------------------------------------


def draw_burst(accepted: list[float], completed: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for times, label in ((accepted, "accepted (202)"), (completed, "completed (event + email)")):
        times = sorted(times)
        ax.step(times, range(1, len(times) + 1), where="post", label=label)
    ax.set_xlabel("seconds since the burst was fired")
    ax.set_ylabel("registrations")
    ax.set_title(f"{len(accepted)} registrations at once ({datetime.date.today()})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(CHART)
    plt.close(fig)
    progress(f"chart: {CHART.relative_to(ROOT)}")


HEADER = """# make bench results

One row per `make bench` run (`bench/run.py`), newest last; every figure of a row comes
from the same run on the machine named. The machine is shared and noisy: compare ratios.

* `hash_rate` — bare argon2id hashes/s at the Settings parameters, one process per core.
* `pipeline_rps` — completed registrations/s (user row, `user.registered`, activation
  email at the SMTP sink), 16 closed-loop clients; `pipeline_ratio` = ÷ `hash_rate`.
* `door_rps` — 202/s with workers stopped (`Prefer: respond-async`, 32 connections);
  `door_ratio` = ÷ the same load against a minimal aiohttp app answering 202.
* `accept_p99_ms` — respond-async latency p99, open loop at half `door_rps`, workers up.
* `e2e_p99_ms` — POST to `user.registered` p99, open loop at half `pipeline_rps`.
* `burst_*` — 5,000 registrations at once: seconds until all answered, until all
  completed, and accepted minus completed after the drain.

| date (UTC) | commit | machine | cpus | """


def identity() -> tuple[str, str, str]:
    """(date, commit, machine) of a results row; the commit is marked +dirty when the
    tracked files differ from it."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    # What this run writes itself (the chart, the results table) does not make it dirty.
    dirty = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!bench/burst.png",
            ":!bench/RESULTS.md",
            ":!bench/SCALE.md",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    uname = platform.uname()
    return (
        datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        commit + ("+dirty" if dirty else ""),
        f"{uname.system} {uname.release} {uname.machine}",
    )


def hasher() -> PasswordHasher:
    """argon2id at the Settings parameters, as the workers hash."""
    settings = Settings()
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def record(figures: dict[str, float]) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(
            HEADER + " | ".join(FIGURES) + " |\n" + "| --- " * (4 + len(FIGURES)) + "|\n"
        )
    cells = [
        *identity(),
        str(os.cpu_count()),
        *(fmt(figures.get(name, float("nan"))) for name in FIGURES),
    ]
    with RESULTS.open("a") as f:
        f.write("| " + " | ".join(cells) + " |\n")


def fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value != value:  # NaN: not measured
        return "nan"
    return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"


async def main(args) -> int:
    options = Options(log_level=args.log_level, process_env=LIMITS)
    figures: dict[str, float] = {}
    began = time.perf_counter()
    try:
        progress(f"hash_rate: argon2id in {os.cpu_count()} processes for {args.hash_s:.0f}s")
        figures["hash_rate"] = await asyncio.to_thread(hash_rate, args.hash_s)
        progress(f"hash_rate: {figures['hash_rate']:.1f} hashes/s")
        door, reference = await door_phase(options, args.door_s)
        figures["door_rps"] = door
        figures["door_ratio"] = door / reference if reference else float("nan")
        figures.update(await pipeline_phases(options, args, door))
        figures["pipeline_ratio"] = figures["pipeline_rps"] / figures["hash_rate"]
    finally:
        progress(f"done in {time.perf_counter() - began:.0f}s")
        missing = [name for name in FIGURES if name not in figures]
        if missing:
            progress(f"not measured: {', '.join(missing)}")
        record(figures)
        for name in FIGURES:
            print(f"{name}={fmt(figures.get(name, float('nan')))}", flush=True)
    return 0 if not missing else 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-s", type=float, default=8.0)
    parser.add_argument("--door-s", type=float, default=10.0)
    parser.add_argument("--pipeline-s", type=float, default=30.0)
    parser.add_argument("--accept-s", type=float, default=5.0)
    parser.add_argument("--e2e-s", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--burst-connections", type=int, default=1000)
    parser.add_argument("--drain-s", type=float, default=240.0, help="cap for each drain")
    parser.add_argument("--log-level", default="INFO", help="of the registrar processes")
    parser.add_argument("--quick", action="store_true", help="short phases, a small burst")
    args = parser.parse_args(argv)
    if args.quick:
        args.hash_s, args.door_s, args.pipeline_s = 2.0, 3.0, 5.0
        args.accept_s, args.e2e_s, args.burst, args.drain_s = 2.0, 4.0, 200, 60.0
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
