"""The seven faults. Each one stops something part-way through the stream and restores it
in `finally`, so an interrupted harness (Ctrl-C, SIGTERM, an error) leaves the machine as
it found it; infra.ensure_services_running() checks once more at the end of the run.
"""

from __future__ import annotations

import asyncio

from tests.faults.common import progress
from tests.faults.harness import FaultContext, Scenario
from tests.faults.infra import ensure_services_running, pg_ctlcluster, run_to_completion


async def worker_kill(ctx: FaultContext) -> None:
    """SIGKILL the worker mid-stream (no shutdown, no requeue), then start a new one: what
    it had taken but not acknowledged comes back from the broker."""
    try:
        ctx.service.kill_worker(0)
        await asyncio.sleep(ctx.options.restart_after_s)
    finally:
        worker = ctx.service.spawn_worker()
    await worker.wait_ready()


async def broker_restart(ctx: FaultContext) -> None:
    """Stop RabbitMQ's application (every connection drops, the node stays), wait, start
    it again: publishers get no confirms, consumers lose their channels."""
    try:
        await run_to_completion(["rabbitmqctl", "stop_app"])
        await asyncio.sleep(ctx.options.broker_down_s)
    finally:
        await run_to_completion(["rabbitmqctl", "start_app"])
    await run_to_completion(["rabbitmqctl", "await_startup"])


async def db_restart(ctx: FaultContext) -> None:
    """Restart the PostgreSQL cluster: every connection of every process is cut."""
    try:
        await run_to_completion(pg_ctlcluster("restart"))
    finally:
        ensure_services_running()


async def smtp_outage(ctx: FaultContext) -> None:
    """Take the SMTP sink down for `outage_s` (connections refused), then bring it back
    on the same port: emails must wait and go out once, not be dropped or doubled."""
    sink = ctx.env.sink
    try:
        sink.stop()
        await asyncio.sleep(ctx.options.outage_s)
    finally:
        # start() spawns the process before its first await: restored even if cancelled.
        await sink.start()


async def webhook_receiver_outage(ctx: FaultContext) -> None:
    """Take the webhook receiver down for `outage_s` (connections refused), then bring it
    back on the same port: each event must reach it once, signed, not be dropped or
    doubled; the webhooks worker backs off meanwhile and delivers the backlog after."""
    receiver = ctx.env.webhooks.receiver
    try:
        receiver.stop()
        await asyncio.sleep(ctx.options.outage_s)
    finally:
        await receiver.start()


async def gateway_kill(ctx: FaultContext) -> None:
    """SIGKILL the gateway (requests in flight get no answer), start a new one on the
    same port; clients retry with the same Idempotency-Key."""
    try:
        ctx.service.kill_gateway()
        await asyncio.sleep(ctx.options.restart_after_s)
    finally:
        gateway = ctx.service.spawn_gateway()
    await gateway.wait_ready()


async def dup_race(ctx: FaultContext) -> None:
    """Nothing to inject mid-stream: the fault is the whole scenario (two `worker all`
    processes, and every command published twice by the Replayer)."""
    progress("dup_race: two workers and forced redeliveries since the start")


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("worker_kill", worker_kill),
        Scenario("broker_restart", broker_restart),
        Scenario("db_restart", db_restart),
        Scenario("smtp_outage", smtp_outage),
        Scenario("gateway_kill", gateway_kill),
        Scenario("dup_race", dup_race, workers=2, replay=True),
        Scenario("webhook_receiver_outage", webhook_receiver_outage, webhooks=True),
    )
}
# Restarting the machine's PostgreSQL or RabbitMQ breaks whatever else uses them.
DISRUPTS_SHARED_SERVICES = frozenset({"broker_restart", "db_restart"})
