"""`make bench-login`: does a login storm starve the registration door? (SPEC §10)

One run on real processes, with a database, AMQP prefix and SMTP sink of its own (the
Environment of tests/faults); progress on stderr, the `name=value` lines last on stdout.

1. Setup: a gateway and `registrar worker all` (run.running) register the users the
   login side needs, each waited for until complete (row, `user.registered`, email).
   Some are then activated in the database, as the activation worker does it
   (`is_approved = true`); some of those are locked by five wrong passwords through the
   gateway (the default REGISTRAR_LOGIN_MAX_FAILURES).
2. Storm: for each password-check configuration (`--configs THREADS:QUEUE[:NICE],...`;
   the first is the Settings default and gives the headline figures; NICE is an
   experiment: the bench renices the gateway's verify threads, there is no setting for
   it) a gateway without workers, as `door_rps` is measured by `make bench`; all of them
   run at once. Rounds, interleaved (alone, storm; one configuration after the other;
   `--rounds` times): the door alone (32 closed-loop connections, `POST
   /{apiKey}/register` with `Prefer: respond-async`, as run.py's door phase), then the
   same while 50 closed-loop clients post wrong passwords to `/{apiKey}/login`, half for
   the existing users and half for names that do not exist. Medians over the rounds.
   Meanwhile the CPU of the gateway's event loop and of its other threads (argon2), of
   PostgreSQL, RabbitMQ, the load generator and the whole machine is read from /proc
   (stderr: cores, and CPU ms per door 202, alone -> storm).
3. Timing, no storm, against the first configuration's gateway: the 401 of each kind of
   failure — unknown user, wrong password, not yet activated (right password), locked
   (right password) — one request at a time, the kinds interleaved.

The per-name and per-address login rate limits are lifted for every process of the run,
so that the storm really reaches argon2 instead of being answered 429; the lock-out stays
on (a locked user's password is still verified: it costs the same). Exits 1 when
something is broken (an answer other than 202 at the door, a login answer other than
401/429/503, a lost answer, a process that did not exit 0, a ratio that is nan), never
for a low ratio. Each configuration's row and the timing row go to bench/RESULTS.md.

    .venv/bin/python bench/login_storm.py [--rounds 4] [--round-s 5]
        [--configs 1:64,2:64,1:8,1:64:10] [--profile var/storm.txt]

(--configs: the default is 1:64,2:64, the Settings default and two threads.)

(--profile: py-spy of the first configuration's gateway during its first storm.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import asyncpg  # noqa: E402
from _cpu import TICK, CpuMeter, pids_named, threads_of  # noqa: E402
from _load import Client, Sample  # noqa: E402
from _report import quantile_ms  # noqa: E402
from door_cost import postgres_pids, py_spy  # noqa: E402
from run import (  # noqa: E402
    DOOR_CONNECTIONS,
    LIMITS,
    PASSWORD,
    RESULTS,
    builder,
    door_rate,
    fmt,
    identity,
    progress,
    running,
)

from service.settings import Settings  # noqa: E402
from tests.faults.harness import Environment, Options  # noqa: E402
from tests.faults.processes import Service  # noqa: E402

STORM_CLIENTS = 50
WARM_S = 1.0  # each door round's unmeasured start
# The storm starts this long before the door's warm-up: a closed loop of 50 behind one
# argon2 thread needs seconds to reach its steady queue.
STORM_LEAD_S = 4.0
UNLIMITED = "100000000"
LOGIN_LIMITS = tuple(
    (f"REGISTRAR_LOGIN_{scope}RATE_LIMIT_{what}", UNLIMITED)
    for scope in ("", "ADDRESS_")
    for what in ("PER_MINUTE", "BURST")
)
STORM_FIGURES = (
    "door_alone_rps",
    "door_storm_rps",
    "door_storm_ratio",
    "login_401_rps",
    "login_503_rps",
    "login_429_rps",
    "login_p50_ms",
    "login_p99_ms",
    "storm_verify_cores",
)
KINDS = ("unknown", "wrong_password", "not_activated", "locked")
CPU_GROUPS = ("loop", "loop_wait", "verify", "postgres", "rabbitmq", "loadgen", "machine", "stolen")
TIMING_FIGURES = (
    *(f"login_{kind}_{q}_ms" for kind in KINDS for q in ("p50", "p90")),
    "login_timing_spread",
)
WARM_LOGINS = 2  # of each kind, before the timed ones
MAX_FAILURES = Settings.model_fields["login_max_failures"].default
LOGIN_STATUSES = {401: "401", 503: "503", 429: "429"}
STORM_MARKER = "<!-- login_storm.py: storm rows above -->"
TIMING_MARKER = "<!-- login_storm.py: timing rows above -->"


class Broken(list):
    """What went wrong in the run (each also said on stderr)."""

    def add(self, what: str) -> None:
        progress(f"BROKEN: {what}")
        self.append(what)


def login_requests(api_key: str):
    """(username, password) -> raw `POST /{apiKey}/login`, form-urlencoded."""
    head = (
        f"POST /{api_key}/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
    )

    def request(username: str, password: str) -> bytes:
        fields = {"grant_type": "password", "username": username, "password": password}
        body = urlencode(fields).encode()
        return f"{head}{len(body)}\r\n\r\n".encode() + body

    return request


def check_answers(samples: list[Sample], allowed: set[int], what: str, broken: Broken) -> None:
    statuses = Counter(s.status for s in samples)
    lost = sum(n for status, n in statuses.items() if not isinstance(status, int))
    if lost:
        broken.add(f"{what}: {lost} of {len(samples)} requests got no answer")
    wrong = {status: n for status, n in statuses.items() if isinstance(status, int)}
    wrong = {status: n for status, n in wrong.items() if status not in allowed}
    if wrong:
        broken.add(f"{what}: unexpected answers {wrong}")


# --- 1. setup ---------------------------------------------------------------------------


class Users:
    """Login names of the run's users, by what the login side does with them."""

    def __init__(self, tag: str, storm: int, timing: int) -> None:
        self.tag = tag  # run.builder names the n-th registration f"{tag}{n}"
        names = iter(f"{tag}{n}" for n in range(10**9))
        self.storm = [next(names) for _ in range(storm)]  # activated; wrong passwords
        # activated; one wrong password each
        self.wrong = [next(names) for _ in range(WARM_LOGINS + timing)]
        self.inactive = [next(names) for _ in range(10)]  # never activated
        self.locked = [next(names) for _ in range(10)]  # activated, then locked
        self.count = len(self.storm) + len(self.wrong) + 20

    @property
    def activated(self) -> list[str]:
        return [*self.storm, *self.wrong, *self.locked]


async def set_up(env: Environment, users: Users, broken: Broken) -> None:
    api_key = env.tenant["apiKey"]
    async with running(env, "setup", remove_logs=True) as (_, tracker, client):
        progress(f"setup: registering {users.count} users")
        await client.burst(builder(api_key, users.tag), users.count, DOOR_CONNECTIONS)
        check_answers(client.samples, {202}, "setup registrations", broken)
        emails = [s.email for s in client.samples]
        if not await tracker.drain(emails, 300, what="setup"):
            broken.add("setup: not every registration completed")
        conn = await asyncpg.connect(env.database_url)
        try:
            done = await conn.execute(
                "UPDATE users SET is_approved = true, updated_at = now() "
                "WHERE tenant_id = $1 AND user_name = ANY($2::text[])",
                uuid.UUID(env.tenant["id"]),
                users.activated,
            )
            if done != f"UPDATE {len(users.activated)}":
                broken.add(f"setup: activating {len(users.activated)} users said {done!r}")
            progress(f"setup: locking {len(users.locked)} users with wrong passwords")
            request = login_requests(api_key)
            client.samples.clear()

            async def lock(name: str) -> None:
                link = None
                for n in range(MAX_FAILURES):
                    sample = Sample(name, time.perf_counter())
                    link = await client.send(link, request(name, f"wrong-{n}"), sample)
                if link is not None:
                    link.transport.close()

            await asyncio.gather(*(lock(name) for name in users.locked))
            check_answers(client.samples, {401}, "setup lock-out logins", broken)
            locked = await conn.fetchval(
                "SELECT count(*) FROM users WHERE tenant_id = $1 AND user_name = ANY($2::text[])"
                " AND locked_until > now()",
                uuid.UUID(env.tenant["id"]),
                users.locked,
            )
            if locked != len(users.locked):
                broken.add(f"setup: {locked} of {len(users.locked)} users were locked")
        finally:
            await conn.close()


# --- 2. the storm -----------------------------------------------------------------------


class Config:
    """One password-check configuration, its gateway and what its rounds measured."""

    def __init__(self, spec: str, headline: bool) -> None:
        threads, queue, *nice = map(int, spec.split(":"))
        self.threads, self.queue, self.nice = threads, queue, (nice or [0])[0]
        self.spec = f"{threads}:{queue}" + (f":{self.nice}" if self.nice else "")
        self.label = f"threads={threads} queue={queue}" + (
            f" (verify threads reniced to {self.nice} by the bench)" if self.nice else ""
        )
        name = f"threads{threads}_queue{queue}" + (f"_nice{self.nice}" if self.nice else "")
        self.suffix = "" if headline else f"_{name}"
        self.service: Service | None = None
        self.alone: list[float] = []
        self.storm: list[float] = []
        self.logins: list[Sample] = []  # answered within the storm rounds' windows
        self.window_s = 0.0
        self.verify_cores: list[float] = []
        self.cpu: dict[str, list[dict[str, float]]] = {"alone": [], "storm": []}

    def start(self, env: Environment) -> Service:
        process_env = {
            **env.env,
            "REGISTRAR_PASSWORD_CHECK_THREADS": str(self.threads),
            "REGISTRAR_PASSWORD_CHECK_QUEUE": str(self.queue),
        }
        self.service = Service(process_env, env.root / f"gateway-{self.spec}", workers=0)
        return self.service

    def report_cpu(self) -> None:
        """On stderr: the median cores of each group, and its CPU ms per door 202, in the
        door's rounds alone and in its rounds with the storm."""
        progress(f"{self.label}, medians of the rounds, alone -> storm:")
        phases = {"alone": self.alone, "storm": self.storm}
        for name in CPU_GROUPS:
            used, per_202 = [], []
            for phase, rates in phases.items():
                rounds = self.cpu[phase]
                used.append(statistics.median(c[name] for c in rounds))
                ms = [1000 * c[name] / rps for c, rps in zip(rounds, rates, strict=True)]
                per_202.append(statistics.median(ms))
            progress(
                f"  {name:<9} {used[0]:5.2f} -> {used[1]:5.2f} cores, "
                f"{per_202[0]:5.2f} -> {per_202[1]:5.2f} ms per door 202"
            )

    def renice(self) -> None:
        """The experiment of a niceness for the verify threads (as REGISTRAR_HASH_NICE is
        for the workers' hash threads), done from outside: every thread of the gateway but
        its event loop gets `nice`. The pool starts its threads at the first checks, so
        this runs once the storm is on."""
        pid = self.service.gateway.popen.pid
        for tid in threads_of(pid) if self.nice else ():
            if tid != pid:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, tid, self.nice)

    def figures(self) -> dict[str, float]:
        alone = statistics.median(self.alone) if self.alone else float("nan")
        storm = statistics.median(self.storm) if self.storm else float("nan")
        statuses = Counter(s.status for s in self.logins)
        latencies = [s.done - s.start for s in self.logins]
        window = self.window_s or float("nan")
        figures = {
            "door_alone_rps": alone,
            "door_storm_rps": storm,
            "door_storm_ratio": storm / alone if alone else float("nan"),
            **{f"login_{n}_rps": statuses[code] / window for code, n in LOGIN_STATUSES.items()},
            "login_p50_ms": quantile_ms(latencies, 50),
            "login_p99_ms": quantile_ms(latencies, 99),
            "storm_verify_cores": (
                statistics.median(self.verify_cores) if self.verify_cores else float("nan")
            ),
        }
        return {f"{name}{self.suffix}": value for name, value in figures.items()}


def storm_builder(api_key: str, existing: list[str], tag: str):
    """n -> a wrong password for an existing user (even n) or an unknown name (odd n)."""
    request = login_requests(api_key)

    def build(n: int) -> tuple[bytes, str]:
        name = f"nobody.{tag}{n}" if n % 2 else existing[(n // 2) % len(existing)]
        return request(name, f"wrong-{tag}{n}"), name

    return build


def run_queue_wait(pid: int) -> float:
    """Seconds the main thread of `pid` has been runnable but waiting for a core."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, f.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


class RoundMeter:
    """Cores used over a round: the gateway's event loop (its main thread) and its other
    threads (the argon2 verifications), this run's PostgreSQL processes, RabbitMQ (shared
    with anyone else on the machine), the load generator, and the whole machine; and
    `loop_wait`, the share of the time the event loop was ready to run but had no core."""

    def __init__(self, gateway: int, postgres: list[int]) -> None:
        self.gateway = gateway
        self._groups = CpuMeter(
            {"postgres": postgres, "rabbitmq": pids_named("beam.smp"), "loadgen": [os.getpid()]}
        )
        self._threads: dict[int, float] = {}
        self._machine = (0.0, 0.0)
        self._waited = 0.0
        self._started = 0.0

    def start(self) -> None:
        self._threads, self._machine = threads_of(self.gateway), machine_cpu()
        self._waited = run_queue_wait(self.gateway)
        self._groups.start()
        self._started = time.perf_counter()

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._started
        spent = {t: cpu - self._threads.get(t, 0.0) for t, cpu in threads_of(self.gateway).items()}
        busy, stolen = (b - a for a, b in zip(self._machine, machine_cpu(), strict=True))
        cpu = {"loop": spent.pop(self.gateway, 0.0), "verify": sum(spent.values())}
        cpu["loop_wait"] = run_queue_wait(self.gateway) - self._waited
        cpu |= self._groups.stop() | {"machine": busy, "stolen": stolen}
        return {name: seconds / elapsed for name, seconds in cpu.items()}


async def door_round(
    env: Environment, config: Config, tag: str, seconds: float, broken: Broken
) -> tuple[float, Client, dict[str, float]]:
    """The door's 202/s over `seconds` after WARM_S of the same load, its client, and the
    cores used meanwhile (RoundMeter)."""
    client = Client("127.0.0.1", config.service.port)
    build = builder(env.tenant["apiKey"], tag)
    await client.closed_loop(build, DOOR_CONNECTIONS, WARM_S)
    meter = RoundMeter(config.service.gateway.popen.pid, await postgres_pids(env))
    meter.start()
    rps = await door_rate(client, build, seconds, warm_s=0)
    cores = meter.stop()
    check_answers(client.samples, {202}, f"door ({config.label})", broken)
    return rps, client, cores


async def storm_round(
    env: Environment,
    config: Config,
    existing: list[str],
    tag: str,
    seconds: float,
    broken: Broken,
    profile: str | None,
) -> tuple[float, dict[str, float]]:
    """The door's 202/s while STORM_CLIENTS hammer login, and the gateway's cores (as
    door_round); the logins answered meanwhile are kept on `config`."""
    logins = Client("127.0.0.1", config.service.port)
    build = storm_builder(env.tenant["apiKey"], existing, tag)
    storm_s = STORM_LEAD_S + WARM_S + seconds + 1.0
    storm = asyncio.create_task(logins.closed_loop(build, STORM_CLIENTS, storm_s))
    await asyncio.sleep(STORM_LEAD_S)
    config.renice()
    spy = None
    if profile:
        spy = py_spy(config.service.gateway.popen.pid, seconds + WARM_S, profile)
    rps, door, cores = await door_round(env, config, f"{tag}d.", seconds, broken)
    await storm
    if spy is not None:
        spy.wait(timeout=seconds + 30)
        progress(f"profile: {profile} (bench/door_cost.py --top {profile})")
    check_answers(logins.samples, set(LOGIN_STATUSES), f"login storm ({config.label})", broken)
    if not door.samples:
        broken.add(f"door ({config.label}): no answer during the storm")
        return rps, cores
    start = min(s.start for s in door.samples)
    end = max(s.done for s in door.samples)
    config.logins += [s for s in logins.samples if start <= s.done <= end]
    config.window_s += end - start
    config.verify_cores.append(cores["verify"])
    return rps, cores


async def storm_phase(
    env: Environment, configs: list[Config], users: Users, args, broken: Broken
) -> None:
    run_tag = uuid.uuid4().hex[:6]
    for n in range(args.rounds):
        for config in configs:
            tag = f"r{run_tag}.{n}.{config.spec.replace(':', '-')}."
            alone, _, calm = await door_round(env, config, f"{tag}a.", args.round_s, broken)
            profile = args.profile if n == 0 and config is configs[0] else None
            storm, busy = await storm_round(
                env, config, users.storm, tag, args.round_s, broken, profile
            )
            config.alone.append(alone)
            config.storm.append(storm)
            config.cpu["alone"].append(calm)
            config.cpu["storm"].append(busy)
            statuses = Counter(str(s.status) for s in config.logins)
            progress(
                f"round {n + 1}/{args.rounds} {config.label}: door alone {alone:.0f}/s, "
                f"storm {storm:.0f}/s (x{storm / alone:.2f}); cores alone {cores(calm)}; "
                f"storm {cores(busy)}; logins so far {dict(statuses)}"
            )
    for config in configs:
        config.report_cpu()


def cores(cpu: dict[str, float]) -> str:
    return " ".join(f"{name} {cpu[name]:.2f}" for name in CPU_GROUPS)


# --- 3. timing of the failures ----------------------------------------------------------


async def timing_phase(
    port: int, api_key: str, users: Users, count: int, broken: Broken
) -> dict[str, list[float]]:
    """Seconds to the 401 of each kind, `count` each, one request at a time."""
    request = login_requests(api_key)
    wrong = iter(users.wrong)
    kinds = {
        "unknown": lambda n: (f"nobody.timing{n}", PASSWORD),
        "wrong_password": lambda n: (next(wrong), "not-the-password"),
        "not_activated": lambda n: (users.inactive[n % len(users.inactive)], PASSWORD),
        "locked": lambda n: (users.locked[n % len(users.locked)], PASSWORD),
    }
    client = Client("127.0.0.1", port)
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    conn = None
    for n in range(WARM_LOGINS + count):
        order = KINDS[n % len(KINDS) :] + KINDS[: n % len(KINDS)]  # no kind always first
        for kind in order:
            sample = Sample(kind, time.perf_counter())
            conn = await client.send(conn, request(*kinds[kind](n)), sample)
            if n >= WARM_LOGINS:
                latencies[kind].append(sample.done - sample.start)
    if conn is not None:
        conn.transport.close()
    check_answers(client.samples, {401}, "timing logins", broken)
    return latencies


def timing_figures(latencies: dict[str, list[float]]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for kind in KINDS:
        figures[f"login_{kind}_p50_ms"] = quantile_ms(latencies[kind], 50)
        figures[f"login_{kind}_p90_ms"] = quantile_ms(latencies[kind], 90)
    medians = [figures[f"login_{kind}_p50_ms"] for kind in KINDS]
    figures["login_timing_spread"] = max(medians) / min(medians) if min(medians) else float("nan")
    return figures


# --- output -----------------------------------------------------------------------------


def table_head(*columns: str) -> str:
    return "| " + " | ".join(columns) + " |\n" + "| --- " * len(columns) + "|\n"


IDENTITY = ("date (UTC)", "commit")
STORM_HEAD = table_head(*IDENTITY, "machine", "cpus", "threads:queue[:nice]", *STORM_FIGURES)
TIMING_HEAD = table_head(*IDENTITY, "n", *(k.replace("_", " ") for k in KINDS), TIMING_FIGURES[-1])
SECTION = f"""## Login storm

`bench/login_storm.py` (`make bench-login`): the door rate (as `door_rps`: no workers,
32 connections, respond-async) alone and while 50 clients post wrong passwords to
`/login` (half existing users, half unknown names; login rate limits lifted), rounds
interleaved, medians; one row per password-check configuration
(`REGISTRAR_PASSWORD_CHECK_THREADS` : `_QUEUE`; `:nice`: the bench reniced the gateway's
verify threads, an experiment, there is no such setting), all measured in the same run.
Logins are counted by status while the door was measured; p50/p99 over all of them;
`storm_verify_cores` is the CPU of the gateway's threads other than its event loop (the
argon2 verifications) during the storm.

    .venv/bin/python bench/login_storm.py

{STORM_HEAD}{STORM_MARKER}

The 401 of each kind of failure, no storm, one request at a time, kinds interleaved,
default configuration; p50 / p90 in ms; `login_timing_spread` = largest ÷ smallest p50.

{TIMING_HEAD}{TIMING_MARKER}

"""


def show(name: str, figures: dict[str, float]) -> str:
    """run.fmt, but the timing spread (a ratio near 1) with two decimals."""
    value = figures.get(name, float("nan"))
    return f"{value:.2f}" if name == "login_timing_spread" and value == value else fmt(value)


def record(configs: list[Config], figures: dict[str, float], count: int) -> None:
    """A row per configuration and a timing row, into the "Login storm" section (added
    when missing: not after the `make bench` table, which run.py appends to)."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if STORM_MARKER not in text:  # before the first section, else at the end
        heading = text.find("\n## ")
        at = heading + 1 if heading >= 0 else len(text)
        text = text[:at] + SECTION + text[at:]
    date, commit, machine = identity()
    for config in configs:
        cells = [date, commit, machine, str(os.cpu_count()), config.spec]
        cells += [fmt(figures.get(f"{n}{config.suffix}", float("nan"))) for n in STORM_FIGURES]
        text = text.replace(STORM_MARKER, "| " + " | ".join(cells) + " |\n" + STORM_MARKER)
    cells = [date, commit, str(count)]
    for kind in KINDS:
        p50, p90 = (figures.get(f"login_{kind}_{q}_ms", float("nan")) for q in ("p50", "p90"))
        cells.append(f"{fmt(p50)} / {fmt(p90)}")
    cells.append(show("login_timing_spread", figures))
    text = text.replace(TIMING_MARKER, "| " + " | ".join(cells) + " |\n" + TIMING_MARKER)
    RESULTS.write_text(text)


async def measure(args, configs: list[Config], broken: Broken) -> dict[str, float]:
    options = Options(log_level=args.log_level, process_env=LIMITS + LOGIN_LIMITS)
    figures: dict[str, float] = {}
    async with Environment(options) as env:
        users = Users(f"ls{uuid.uuid4().hex[:6]}.", args.storm_users, args.timing_n)
        await set_up(env, users, broken)
        try:
            for config in configs:
                progress(f"starting a gateway without workers, {config.label}")
                await config.start(env).start()
            await storm_phase(env, configs, users, args, broken)
            progress(f"timing: {args.timing_n} logins of each kind against {configs[0].label}")
            latencies = await timing_phase(
                configs[0].service.port, env.tenant["apiKey"], users, args.timing_n, broken
            )
            figures.update(timing_figures(latencies))
        finally:
            for config in configs:
                if config.service is None:
                    continue
                codes = config.service.stop()
                if any(codes.values()):
                    broken.add(f"{config.label}: exited {codes}; logs in {env.root}")
        for config in configs:
            figures.update(config.figures())
        if not broken:
            env.remove_logs()
    return figures


async def main(args) -> int:
    configs = [Config(spec, headline=i == 0) for i, spec in enumerate(args.configs.split(","))]
    progress(
        f"login rate limits lifted for the run ({', '.join(n for n, _ in LOGIN_LIMITS)} = "
        f"{UNLIMITED}) so that the storm reaches argon2; lock-out at its default"
    )
    broken = Broken()
    figures: dict[str, float] = {}
    began = time.perf_counter()
    try:
        figures = await measure(args, configs, broken)
    finally:
        progress(f"done in {time.perf_counter() - began:.0f}s")
        names = [*STORM_FIGURES, *TIMING_FIGURES]
        names += [f"{n}{config.suffix}" for config in configs[1:] for n in STORM_FIGURES]
        for name in names:
            if name.endswith("ratio") or name == "login_timing_spread":
                value = figures.get(name, float("nan"))
                if value != value:
                    broken.add(f"{name} is nan")
        if figures:
            record(configs, figures, args.timing_n)
        for name in names:
            print(f"{name}={show(name, figures)}", flush=True)
    return 1 if broken else 0


def parse_args(argv=None):
    defaults = Settings.model_fields
    default_config = (
        f"{defaults['password_check_threads'].default}:{defaults['password_check_queue'].default}"
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alone + storm pairs")
    parser.add_argument("--round-s", type=float, default=5.0, help="measured seconds a round")
    parser.add_argument(
        "--configs",
        default=f"{default_config},2:64",
        help="THREADS:QUEUE[:NICE] of the password checks, comma-separated; the first is the "
        "headline; NICE: the bench renices the gateway's verify threads (an experiment)",
    )
    parser.add_argument("--storm-users", type=int, default=200, help="existing users stormed")
    parser.add_argument("--timing-n", type=int, default=40, help="logins of each failure kind")
    parser.add_argument("--profile", help="py-spy the first gateway in its first storm, here")
    parser.add_argument("--log-level", default="INFO", help="of the registrar processes")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
