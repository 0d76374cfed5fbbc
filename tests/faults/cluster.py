"""`python -m tests.faults.cluster` (`make cluster`): a RabbitMQ cluster loses a node.

A throwaway three-node cluster on loopback (tests/faults/rabbit_cluster.py); the run's
environment as `make faults` makes it (database, prefix, sink, tenant, audit queue), with
REGISTRAR_AMQP_URL listing the three nodes for the processes and for the audit; then one
scenario, cluster_node_loss: a gateway and two `worker all` processes (all on the first
node that answers, the first of the list), the steady stream of registrations and
invitations, and part-way through, the node that leads the work queues stops its
application (every connection to it drops; the other two keep a quorum), stays down for
`--node-down` seconds and comes back. Then the drain and the audit from outside.

Before the fault the harness checks that every work queue has a replica on each of the
three nodes (a queue with fewer would not prove anything). Progress goes to stderr; the
result line, `make faults`' form, is the last line on stdout:

    scenario=cluster_node_loss accepted=N registered=N events=N emails=N lost=N duplicated=N stuck=N

Exit status: 0 when accepted > 0 and lost = duplicated = stuck = 0; 1 when it fell short;
2 when it could not be run; 130 when interrupted. The nodes are stopped in every case
(finally, SIGTERM/SIGHUP, atexit); their data and logs are kept when the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import signal
import sys
import traceback
import uuid
from collections import Counter
from functools import partial

from service.amqp import QUEUE_BINDINGS, Names
from tests.faults.__main__ import (
    add_run_options,
    check_process_env,
    options_from,
    report_failure,
    within_budget,
)
from tests.faults.audit import Result
from tests.faults.common import progress
from tests.faults.harness import Environment, FaultContext, Options, Scenario, run_scenario
from tests.faults.infra import finish_anyway
from tests.faults.rabbit_cluster import LocalCluster

NAME = "cluster_node_loss"
# `make cluster` must end within 15 minutes on two cores: start-up and shutdown of the
# nodes take about a minute; the drain gets what is left.
DEFAULT_BUDGET_S = 13 * 60
DEFAULT_NODE_DOWN_S = 20.0
DEFAULT_DURATION_S = 45.0
DEFAULT_FAULT_AT_S = 12.0
# An email whose handler was cancelled mid-send when its node's connection dropped keeps
# its claim until the lease (REGISTRAR_EMAIL_LEASE_S, 120 s) expires; a retry takes it
# over about 156 s later (retry delays 1 + 5 + 30 + 120 s): the drain must outlast that.
DEFAULT_DRAIN_TIMEOUT_S = 300.0
# Stopping three nodes and the processes, removing the database: kept out of the drain.
STOP_RESERVE_S = 60


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.cluster",
        description="A three-node RabbitMQ cluster loses the node leading the work queues.",
    )
    add_run_options(parser)
    parser.add_argument(
        "--node-down", type=float, default=DEFAULT_NODE_DOWN_S, help="seconds the node stays down"
    )
    parser.set_defaults(
        duration=DEFAULT_DURATION_S,
        fault_at=DEFAULT_FAULT_AT_S,
        budget=DEFAULT_BUDGET_S,
        drain_timeout=DEFAULT_DRAIN_TIMEOUT_S,
    )
    args = parser.parse_args(argv)
    check_process_env(parser, args)
    return args


async def lose_the_leading_node(cluster: LocalCluster, node_down_s: float, ctx: FaultContext):
    """stop_app on the node leading most work queues; start_app after `node_down_s`."""
    names = Names(ctx.env.prefix)
    work_queues = [names.queue(role) for role in QUEUE_BINDINGS]
    via = cluster.nodes[0]
    replicas = {q: await finish_anyway(cluster.replicas, via, q) for q in work_queues}
    for queue, states in replicas.items():
        if len(states) < len(cluster.nodes):
            raise RuntimeError(f"{queue} has replicas on {sorted(states)} only")
        progress(f"{NAME}: {queue}: {', '.join(f'{n} {s}' for n, s in sorted(states.items()))}")
    leaders = Counter(
        node for states in replicas.values() for node, s in states.items() if s == "leader"
    )
    leading = cluster.node(leaders.most_common(1)[0][0])
    survivor = next(node for node in cluster.nodes if node is not leading)
    progress(f"{NAME}: stopping {leading.name}, which leads {leaders[leading.name]} work queues")
    try:
        await finish_anyway(cluster.stop_app, leading)
        await asyncio.sleep(node_down_s / 2)
        moved = {q: await finish_anyway(cluster.leader, survivor, q) for q in work_queues}
        progress(f"{NAME}: leaders while {leading.name} is down: {moved}")
        await asyncio.sleep(node_down_s / 2)
    finally:
        progress(f"{NAME}: bringing {leading.name} back")
        await finish_anyway(cluster.start_app, leading)


async def run(args: argparse.Namespace, cluster: LocalCluster) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, asyncio.current_task().cancel)
    options: Options = options_from(args)
    scenario = Scenario(NAME, partial(lose_the_leading_node, cluster, args.node_down), workers=2)
    result: Result | None = None
    env = Environment(options, amqp_url=cluster.url, broker_is_ours=True)
    started = loop.time()
    try:
        await finish_anyway(cluster.start)
        async with env:
            left = args.budget - (loop.time() - started) - STOP_RESERVE_S
            result = await run_scenario(env, scenario, within_budget(options, left, 0))
    except Exception:
        progress(f"{NAME}: could not be run:\n{traceback.format_exc()}")
        return 2
    finally:
        failed = result is None or not result.ok
        if result is not None and not result.ok:
            report_failure(result)
        if failed or args.keep_logs or (result is not None and result.process_failures):
            progress(f"logs kept under {env.root}")
        else:
            env.remove_logs()
        await finish_anyway(partial(cluster.stop, keep_files=failed))
        if result is not None:
            print(result.line(), flush=True)  # last, and also when interrupted
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Our connections reconnect through the node loss by design; aio-pika's tracebacks
    # about it would bury the progress lines.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cluster = LocalCluster(uuid.uuid4().hex[:8])
    atexit.register(cluster.stop, keep_files=True)  # a no-op once stopped
    try:
        return asyncio.run(run(args, cluster))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; processes and nodes stopped")
        return 130
    finally:
        cluster.stop(keep_files=True)


if __name__ == "__main__":
    sys.exit(main())
