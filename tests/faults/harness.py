"""One fault-injection run: the environment it owns, and how one scenario is driven.

A scenario: fresh registrar processes, the audit queue bound, a steady stream of clients,
one fault part-way through (restored in `finally`), then the drain — waiting until every
accepted item is settled (or progress stops, or the drain times out) — and the audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg

from service import amqp
from tests.conftest import drop_database, free_port
from tests.faults.audit import Result, WebhookWitness, Witnesses, observe
from tests.faults.broker import EventLog, Replayer, delete_topology
from tests.faults.common import AMQP_URL, POSTGRES_URL, REGISTRAR, progress
from tests.faults.infra import ensure_services_running
from tests.faults.processes import Service
from tests.faults.receiver import Receiver
from tests.faults.sink import Sink
from tests.faults.traffic import Client, Item, Plan, stream

TENANT_PREFIX = "https://app.example.com/"
# An audit query that fails is retried for this long (PostgreSQL coming back up).
AUDIT_RETRY_S = 60
# A broker that accepts TCP but never answers must not hang the harness.
AMQP_TIMEOUT_S = 30


@dataclass(frozen=True)
class Options:
    """Every knob of a run; the defaults are `make faults`."""

    plan: Plan = field(default_factory=Plan)
    fault_at_s: float | None = None  # default: a third of the way into the stream
    outage_s: float = 30.0  # smtp_outage, webhook_receiver_outage: how long a server is down
    broker_down_s: float = 5.0  # broker_restart: between stop_app and start_app
    restart_after_s: float = 2.0  # worker_kill, gateway_kill: before the new process
    replay_delay_s: float = 1.0  # dup_race: a copy goes out within this many seconds
    drain_timeout_s: float = 180.0
    stall_s: float = 60.0  # the drain gives up after this long without change (see drain)
    settle_s: float = 5.0  # after the drain, for late duplicates to show up
    log_level: str = "INFO"
    # Extra REGISTRAR_* settings for the registrar processes (NAME -> value).
    process_env: tuple[tuple[str, str], ...] = ()

    @property
    def fault_delay_s(self) -> float:
        return self.plan.duration_s / 3 if self.fault_at_s is None else self.fault_at_s


@dataclass
class FaultContext:
    """What a fault may touch: the run's environment, the scenario's processes."""

    env: Environment
    service: Service
    options: Options


@dataclass(frozen=True)
class Scenario:
    """A named fault. `inject` runs part-way through the stream and restores what it
    stopped in `finally`; `workers` and `replay` shape the whole scenario (dup_race);
    `webhooks` gives the tenant a webhook endpoint at a receiver of the harness for the
    scenario, and the audit a fourth witness (webhook_receiver_outage)."""

    name: str
    inject: Callable[[FaultContext], Awaitable[None]]
    workers: int = 1
    replay: bool = False
    webhooks: bool = False


async def cli(env: dict[str, str], *args: str) -> str:
    """`registrar ARGS` with `env`; its stdout (failing loudly with its stderr)."""
    process = await asyncio.create_subprocess_exec(
        REGISTRAR,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"registrar {' '.join(args)} failed: {err.decode()[-2000:]}")
    return out.decode()


def _parse_env_lines(text: str) -> dict[str, str]:
    """`NAME=value` lines (as `registrar keys generate` prints them)."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def _bounded(what: str, step: Awaitable, timeout: float = AMQP_TIMEOUT_S):
    """Await a clean-up step for at most `timeout`; report, never raise, if it fails."""
    try:
        return await asyncio.wait_for(step, timeout)
    except Exception as exc:
        progress(f"{what} failed: {exc!r}")
        return None


class Environment:
    """Everything a run owns and removes at the end: a database, an AMQP prefix, a key
    pair, the SMTP sink, a tenant with a bearer token, the audit queue, a log directory.

    `amqp_url` is the broker of the processes and of the audit (a comma-separated list of
    nodes for a cluster); `broker_is_ours` says the run owns that broker outright (a
    throwaway cluster), so nothing on it needs deleting at the end.
    """

    def __init__(
        self, options: Options, *, amqp_url: str = AMQP_URL, broker_is_ours: bool = False
    ) -> None:
        self.options = options
        self.amqp_url = amqp_url
        self.broker_is_ours = broker_is_ours
        self.run_id = uuid.uuid4().hex[:10]
        self.database_url = f"{POSTGRES_URL}/registrar_faults_{self.run_id}"
        self.prefix = f"faults_{self.run_id}"
        self.root = Path(tempfile.mkdtemp(prefix="registrar-faults-"))
        self.env: dict[str, str] = {}
        self.tenant: dict = {}
        self.token = ""
        self.sink: Sink | None = None
        self.amqp: aio_pika.abc.AbstractRobustConnection | None = None
        self.events: EventLog | None = None
        self.webhooks: WebhookWitness | None = None  # during a scenario with `webhooks`

    async def __aenter__(self) -> Environment:
        try:
            await self._setup()
        except BaseException:
            await self._teardown()
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._teardown()

    async def _setup(self) -> None:
        progress(f"run {self.run_id}: database, prefix {self.prefix}, logs under {self.root}")
        outside = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRAR_")}
        self.env = {
            **outside,
            "REGISTRAR_DATABASE_URL": self.database_url,
            "REGISTRAR_AMQP_URL": self.amqp_url,
            "REGISTRAR_AMQP_PREFIX": self.prefix,
            "REGISTRAR_RATE_LIMIT_BURST": "100000",
            "REGISTRAR_RATE_LIMIT_PER_MINUTE": "1000000",
            "REGISTRAR_LOG_LEVEL": self.options.log_level,
            # The webhook receiver listens on 127.0.0.1 over http.
            "REGISTRAR_WEBHOOK_ALLOW_PRIVATE": "true",
            **dict(self.options.process_env),
        }
        self.env.update(_parse_env_lines(await cli(self.env, "keys", "generate")))
        await cli(self.env, "migrate")
        self.sink = Sink(free_port(), self.root / "mail.jsonl", self.root / "sink.log")
        await self.sink.start()
        self.env["REGISTRAR_SMTP_URL"] = f"smtp://127.0.0.1:{self.sink.port}"
        self.tenant = json.loads(
            await cli(
                self.env, "tenant", "create", "Faults", "--activation-url-prefix", TENANT_PREFIX
            )
        )
        token = await cli(
            self.env, "token", "create", "--tenant", self.tenant["id"], "--scope", "users:invite"
        )
        self.token = json.loads(token)["token"]
        # The service's own connect: with several nodes, the audit fails over as they do.
        self.amqp = await asyncio.wait_for(
            amqp.connect(self.amqp_url, name=f"faults-{self.run_id}"), AMQP_TIMEOUT_S
        )
        self.events = EventLog(self.amqp, self.prefix)

    async def open_webhooks(self, scenario: str) -> Receiver:
        """A receiver process and an endpoint of the tenant at it, for one scenario; the
        endpoint takes the events the audit looks for (user.registered, invitation.sent)."""
        port = free_port()
        url = f"http://127.0.0.1:{port}/webhooks"
        added = json.loads(
            await cli(
                self.env, "webhook", "add", "--tenant", self.tenant["id"], "--url", url,
                "--event", "user.registered", "--event", "invitation.sent",
            )
        )  # fmt: skip
        receiver = Receiver(
            port, self.root / f"{scenario}.webhooks.jsonl", self.root / "receiver.log",
            secret=added["secret"],
        )  # fmt: skip
        assert receiver.url == url
        self.webhooks = WebhookWitness(uuid.UUID(added["id"]), receiver)
        await receiver.start()
        return receiver

    async def close_webhooks(self) -> None:
        """Stop the receiver and remove the endpoint (later scenarios deliver nothing)."""
        if self.webhooks is None:
            return
        self.webhooks.receiver.stop()
        try:
            await cli(self.env, "webhook", "remove", str(self.webhooks.endpoint_id))
        except RuntimeError as exc:
            progress(f"removing the webhook endpoint failed: {exc}")
        unverified = self.webhooks.receiver.unverified()
        if unverified:
            progress(f"the webhook receiver refused {unverified} requests it could not verify")
        self.webhooks = None

    async def _teardown(self) -> None:
        """Best effort, step by step, each bounded in time: one failing or hanging step
        must not skip the others."""
        ensure_services_running()
        if self.webhooks is not None:
            self.webhooks.receiver.stop()
        if self.sink is not None:
            self.sink.stop()
        if self.events is not None:
            await _bounded("closing the audit channel", self.events.close())
        if self.amqp is not None:
            if not self.broker_is_ours:  # a throwaway broker goes with everything on it
                deleted = await _bounded(
                    f"deleting the queues and exchanges of {self.prefix}",
                    delete_topology(self.amqp, self.prefix),
                    timeout=120,
                )
                if deleted is not None:
                    progress(f"deleted {deleted} queues and exchanges under {self.prefix}.")
            await _bounded("closing the AMQP connection", self.amqp.close())
        await _bounded(f"dropping {self.database_url}", self._drop_database(), timeout=90)

    async def _drop_database(self) -> None:
        while True:
            try:
                await asyncio.wait_for(drop_database(self.database_url), 20)
                return
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                progress(f"dropping the database failed ({exc!r}); retrying")
                await asyncio.sleep(2)

    def remove_logs(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def run_scenario(env: Environment, scenario: Scenario, options: Options) -> Result:
    """Fresh processes, stream + fault, drain, audit. Raises if the harness cannot run it."""
    progress(f"{scenario.name}: starting gateway and {scenario.workers} worker(s)")
    service = Service(env.env, env.root / scenario.name, workers=scenario.workers)
    replayer = None
    try:
        if scenario.webhooks:
            await env.open_webhooks(scenario.name)
        await service.start()
        await asyncio.wait_for(env.events.bind(), AMQP_TIMEOUT_S)
        if scenario.replay:
            replayer = Replayer(env.amqp, env.prefix, max_delay_s=options.replay_delay_s)
            await asyncio.wait_for(replayer.start(), AMQP_TIMEOUT_S)
        items = await _stream_with_fault(env, service, scenario, options)
        witnesses = await drain(env, items, options, replayer)
    finally:
        if replayer is not None:
            await _bounded("stopping the replayer", replayer.stop())
            progress(f"{scenario.name}: replayed {replayer.replayed} of {replayer.seen} commands")
        codes = service.stop()
        if scenario.webhooks:
            await env.close_webhooks()
    result = Result(scenario.name, items, witnesses)
    for name, code in codes.items():
        if code:
            failure = f"{name} exited {code} on SIGTERM (expected 0)"
            result.process_failures.append(failure)
            progress(f"{scenario.name}: {failure}")
    result.notes.append(f"process logs: {service.log_dir}")
    return result


async def _stream_with_fault(
    env: Environment, service: Service, scenario: Scenario, options: Options
) -> list[Item]:
    """Stream for the planned duration; inject the fault after `fault_delay_s`."""
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        client = Client(http, service.url, api_key=env.tenant["apiKey"], token=env.token)
        tag = scenario.name.replace("_", "-")
        traffic = asyncio.create_task(stream(client, options.plan, tag))
        fault = asyncio.create_task(_delayed_fault(scenario, FaultContext(env, service, options)))
        try:
            items = await traffic
            await fault
        finally:
            for task in (fault, traffic):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
    accepted = sum(item.accepted for item in items)
    answers = Counter()
    for item in items:
        answers.update(item.outcomes)
    summary = ", ".join(f"{answer} x{n}" for answer, n in sorted(answers.items()))
    progress(f"{scenario.name}: {len(items)} sent, {accepted} accepted; answers: {summary}")
    return items


async def _delayed_fault(scenario: Scenario, ctx: FaultContext) -> None:
    await asyncio.sleep(ctx.options.fault_delay_s)
    progress(f"{scenario.name}: injecting the fault")
    await scenario.inject(ctx)
    progress(f"{scenario.name}: fault over, everything restored")


async def drain(
    env: Environment, items: list[Item], options: Options, replayer: Replayer | None
) -> dict[str, Witnesses]:
    """Wait until every accepted item is settled, or the timeout; then `settle_s` more for
    late duplicates, and the final audit.

    While some item is stuck (the service shows work in progress, e.g. an email claimed
    under a lease) the drain waits up to its timeout. When the unsettled items are only
    lost, with nothing in progress, it stops after `stall_s` without any change.
    """
    loop = asyncio.get_running_loop()
    started = last_change = last_report = loop.time()
    last_state = None
    while loop.time() - started < options.drain_timeout_s:
        witnesses = await _try_observe(env, items)
        if witnesses is not None:
            unsettled = [w for w in witnesses.values() if not w.settled]
            idle = replayer is None or replayer.pending == 0
            if not unsettled and idle:
                break
            state = _progress_state(witnesses)
            if state != last_state:
                last_state, last_change = state, loop.time()
            elif not any(w.stuck for w in unsettled) and loop.time() - last_change > (
                options.stall_s
            ):
                progress(f"drain: nothing in progress for {options.stall_s:.0f}s, auditing now")
                break
            if loop.time() - last_report >= 10:
                last_report = loop.time()
                stuck = sum(w.stuck for w in unsettled)
                progress(
                    f"drain: {len(witnesses) - len(unsettled)}/{len(witnesses)} settled, "
                    f"{stuck} in progress"
                )
        await asyncio.sleep(1)
    else:
        progress(f"drain: timed out after {options.drain_timeout_s:.0f}s")
    await asyncio.sleep(options.settle_s)
    return await _final_observe(env, items)


def _progress_state(witnesses: dict[str, Witnesses]) -> tuple:
    """Anything that changes while the service still works on the items."""
    return tuple(
        sorted(
            (
                key,
                w.rows,
                w.events,
                w.emails,
                w.request_status,
                w.email_statuses,
                w.webhooks,
                w.webhook_statuses,
            )
            for key, w in witnesses.items()
        )
    )


async def _try_observe(env: Environment, items: list[Item]) -> dict[str, Witnesses] | None:
    try:
        return await observe(
            env.database_url, env.tenant["id"], items, env.events, env.sink, env.webhooks
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        progress(f"audit query failed ({exc!r}); will retry")
        return None


async def _final_observe(env: Environment, items: list[Item]) -> dict[str, Witnesses]:
    """The audit; PostgreSQL may still be coming back, so retry for a while."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AUDIT_RETRY_S
    while True:
        witnesses = await _try_observe(env, items)
        if witnesses is not None:
            return witnesses
        if loop.time() > deadline:
            raise RuntimeError("the audit could not reach PostgreSQL")
        await asyncio.sleep(2)
