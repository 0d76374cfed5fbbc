"""What RabbitMQ does with quorum queues: confirmed publishes + consumed acks.

The capacity model (docs/capacity.md) needs the broker's cost per message, not folklore:
this pushes persistent messages of a registration command's size through quorum queues
of its own (declared under a fresh prefix on the broker of the tests, deleted at the
end), as registrar uses them — every publish waits for its publisher confirm, the
consumers ack each message manually with a prefetch — for a fixed time, and reads the
CPU the broker (the `beam.smp` listening on the AMQP port) spent meanwhile from /proc.

* `broker_msgs_per_s`: messages published, confirmed, delivered and acked per second
  (all queues together);
* `broker_cpu_ms_per_msg`: broker CPU per such message (publish + confirm + delivery +
  ack), the figure that scales: a broker core handles 1000 / this messages per second;
* `broker_cores`: broker CPU while it ran, in cores; `load_cores`: this process's
  (publishers and consumers: the Python client is often the limit, not the broker);
  The broker is the beam.smp listening on the AMQP URL's port (other nodes on the machine
  are not counted).

`--cluster` also starts a throwaway 3-node cluster of its own on loopback
(tests/faults/rabbit_cluster.py: own node names, ports, data and cookie; the default node
is never touched), declares the queues through its first node (which leads them; each
has a replica on all three, checked with `rabbitmq-queues quorum_status`), and runs the
same load against it and against the default node, alternately (`--rounds` pairs: A B,
B A, ...), so that both see the same machine. It prints `single_*` (the default node),
`cluster_*` (CPU of all three nodes' beam.smp, per message),
`cluster_nodeN_cpu_ms_per_msg` (each node), `cluster_leader_cpu_ms_per_msg` (the leading
node), `cluster_follower_cpu_ms_per_msg` (a follower the load is not connected to, the
mean), the ratios to the single node measured in the same run
(`cluster_cpu_ratio`, `cluster_leader_ratio`, `cluster_msgs_ratio`) and
`cluster_idle_cores` (the three nodes' own CPU while the single node was measured).
`--load-node 2` connects the load to a follower instead, so that the leader does only
the queue's work and another node the connections'. The nodes are stopped in every case.

The broker is shared with whatever else uses it: its CPU figure includes their traffic
too (run it when the machine is quiet, and say how quiet it was: the load
average is printed). `name=value` lines last on stdout; progress on stderr.

    PYTHONPATH=$PWD .venv/bin/python bench/broker_capacity.py [--seconds 20] [--queues 2]
        [--publishers 8] [--window 32] [--size 700] [--cluster [--rounds 2] [--load-node 1]]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import resource
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from _cpu import cpu_of, pids_named  # noqa: E402

AMQP_URL = os.environ.get("REGISTRAR_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
AMQP_PORT = urlsplit(AMQP_URL).port or 5672


def progress(message: str) -> None:
    print(f"broker_capacity: {message}", file=sys.stderr, flush=True)


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on a TCP port (/proc/net/tcp and tcp6, state 0A)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def node_on_port(port: int) -> int | None:
    """The RabbitMQ node (beam.smp) that serves `port`: other engineers may run nodes of
    their own on the machine, whose CPU is not this broker's."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    for pid in pids_named("beam.smp"):
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                return pid
    return None


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def publisher(channel, queue: str, body: bytes, window: int, stop: asyncio.Event) -> int:
    """Publish persistent messages, at most `window` awaiting their confirm; the count of
    confirmed ones."""
    confirmed = 0
    in_flight: set[asyncio.Task] = set()

    async def one() -> None:
        nonlocal confirmed
        await channel.default_exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue,
        )
        confirmed += 1

    while not stop.is_set():
        if len(in_flight) >= window:
            _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(one())
        in_flight.add(task)
    if in_flight:
        await asyncio.wait(in_flight)
    return confirmed


@dataclass
class Phase:
    """One measured window of the load against one broker (a node or a cluster)."""

    msgs: int  # published, confirmed, delivered and acked
    elapsed: float
    load_cpu: float  # this process
    cpu: dict[str, float]  # beam.smp label -> CPU seconds (nan when not found)
    leaders: dict[str, str] = field(default_factory=dict)  # queue -> leading node

    def ms_per_msg(self, *labels: str) -> float:
        return sum(self.cpu[label] for label in labels) / max(self.msgs, 1) * 1000


def cpu_by_label(pids: dict[str, int | None]) -> dict[str, float]:
    return {label: (cpu_of(pid) if pid else None) or float("nan") for label, pid in pids.items()}


async def push(
    url: str, args, watched: dict[str, int | None], check_queue=None, declare_url: str = ""
) -> Phase:
    """The load against the broker at `url`, on quorum queues of its own (deleted at the
    end): CPU of every `watched` beam.smp over the measured window. The queues are
    declared through `declare_url` (default `url`): RabbitMQ puts a new quorum queue's
    leader on the node the declaring client is connected to. `check_queue(name)`, when
    given, runs after each declaration and returns the queue's leading node."""
    prefix = f"capacity_{uuid.uuid4().hex[:8]}"
    body = os.urandom(args.size // 2).hex().encode()[: args.size]
    declaring = await aio_pika.connect(declare_url or url)
    connection = await aio_pika.connect(url)
    consumed = 0
    leaders = {}
    try:
        setup = await declaring.channel()
        names = [f"{prefix}.q{i}" for i in range(args.queues)]
        for name in names:
            await setup.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
            if check_queue is not None:
                leaders[name] = await check_queue(name)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1

        consumers = []
        for name in names:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=args.prefetch)
            queue = await channel.get_queue(name, ensure=False)
            consumers.append((queue, await queue.consume(on_message)))
        channels = [
            await connection.channel(publisher_confirms=True) for _ in range(args.publishers)
        ]
        stop = asyncio.Event()
        progress(f"{args.publishers} publishers -> {args.queues} quorum queues, warm-up 3 s")
        tasks = [
            asyncio.create_task(publisher(ch, names[i % len(names)], body, args.window, stop))
            for i, ch in enumerate(channels)
        ]
        await asyncio.sleep(3)
        start, own0, consumed0 = time.perf_counter(), own_cpu(), consumed
        cpu0 = cpu_by_label(watched)
        progress(f"measuring {args.seconds:.0f} s")
        await asyncio.sleep(args.seconds)
        elapsed = time.perf_counter() - start
        cpu1 = cpu_by_label(watched)
        phase = Phase(
            msgs=consumed - consumed0,
            elapsed=elapsed,
            load_cpu=own_cpu() - own0,
            cpu={label: cpu1[label] - cpu0[label] for label in watched},
            leaders=leaders,
        )
        stop.set()
        published = sum(await asyncio.gather(*tasks))
        progress(f"{published} confirmed in all; draining")
        for _ in range(100):
            if consumed >= published:
                break
            await asyncio.sleep(0.1)
        for queue, tag in consumers:
            await queue.cancel(tag)
        for name in names:
            await setup.queue_delete(name, if_unused=False, if_empty=False)
    finally:
        await connection.close()
        await declaring.close()
    return phase


def default_node() -> int | None:
    node = node_on_port(AMQP_PORT)
    if node is None:
        progress(f"no beam.smp found listening on port {AMQP_PORT}: broker CPU unknown")
    return node


async def single_node(args) -> dict[str, float]:
    phase = await push(AMQP_URL, args, {"broker": default_node()})
    return {
        "broker_msgs_per_s": phase.msgs / phase.elapsed,
        "broker_cpu_ms_per_msg": phase.ms_per_msg("broker"),
        "broker_cores": phase.cpu["broker"] / phase.elapsed,
        "load_cores": phase.load_cpu / phase.elapsed,
    }


async def cluster_and_single_node(args) -> dict[str, float]:
    """The same load against a 3-node cluster of our own and against the default node,
    alternately (`--rounds`), so that both see the same machine."""
    from tests.faults.rabbit_cluster import LocalCluster

    cluster = LocalCluster(f"cap{uuid.uuid4().hex[:6]}")
    atexit.register(cluster.stop)  # a no-op once stopped
    try:
        await asyncio.to_thread(cluster.start)
        nodes = {node.name: node_on_port(node.amqp_port) for node in cluster.nodes}
        if None in nodes.values():
            raise RuntimeError(f"beam.smp of every node not found: {nodes}")
        first = cluster.nodes[0]

        async def replicated_on_all(queue: str) -> str:
            states = await asyncio.to_thread(cluster.replicas, first, queue)
            if sorted(states) != sorted(nodes) or "leader" not in states.values():
                raise RuntimeError(f"{queue} has replicas {states}, not one on every node")
            progress(f"{queue}: {', '.join(f'{n} {s}' for n, s in sorted(states.items()))}")
            return next(node for node, state in states.items() if state == "leader")

        singles, clustered = [], []
        for round_ in range(args.rounds):
            # A, B, B, A, ...: a drift of the machine's load hits both alike.
            order = ("single", "cluster") if round_ % 2 == 0 else ("cluster", "single")
            for kind in order:
                progress(f"round {round_ + 1}/{args.rounds}: {kind}")
                if kind == "single":
                    # The idle cluster's own CPU is read meanwhile.
                    singles.append(await push(AMQP_URL, args, {"default": default_node(), **nodes}))
                else:
                    load_url = cluster.nodes[args.load_node - 1].url
                    clustered.append(
                        await push(load_url, args, nodes, replicated_on_all, first.url)
                    )
    finally:
        await asyncio.to_thread(cluster.stop)
    return cluster_figures(singles, clustered, list(nodes), cluster.nodes[args.load_node - 1].name)


def cluster_figures(
    singles: list[Phase], clustered: list[Phase], nodes: list[str], load_node: str
) -> dict[str, float]:
    """Totals over the rounds (CPU seconds / messages of each kind); per node: each node,
    the nodes that lead a queue, and the followers that do not take the load's
    connection (their mean)."""

    def cpu(phases: list[Phase], *labels: str) -> float:
        return sum(phase.cpu[label] for phase in phases for label in labels)

    def ms_per_msg(phases: list[Phase], *labels: str) -> float:
        done = sum(phase.msgs for phase in phases)
        return cpu(phases, *labels) / done * 1000 if done else float("nan")

    def per_s(phases: list[Phase], amount: float) -> float:
        return amount / sum(phase.elapsed for phase in phases)

    leading = sorted({node for phase in clustered for node in phase.leaders.values()})
    following = [node for node in nodes if node not in leading and node != load_node]
    single_ms = ms_per_msg(singles, "default")
    cluster_ms = ms_per_msg(clustered, *nodes)
    leader_ms = ms_per_msg(clustered, *leading) / len(leading)
    follower_ms = ms_per_msg(clustered, *following) / len(following) if following else 0.0
    single_rate = per_s(singles, sum(phase.msgs for phase in singles))
    cluster_rate = per_s(clustered, sum(phase.msgs for phase in clustered))
    return {
        "single_msgs_per_s": single_rate,
        "single_cpu_ms_per_msg": single_ms,
        "single_cores": per_s(singles, cpu(singles, "default")),
        "cluster_msgs_per_s": cluster_rate,
        "cluster_cpu_ms_per_msg": cluster_ms,
        "cluster_cores": per_s(clustered, cpu(clustered, *nodes)),
        **{
            f"cluster_node{n}_cpu_ms_per_msg": ms_per_msg(clustered, node)
            for n, node in enumerate(nodes, 1)
        },
        "cluster_leader_nodes": float(len(leading)),
        "cluster_leader_cpu_ms_per_msg": leader_ms,
        "cluster_follower_cpu_ms_per_msg": follower_ms,
        "cluster_idle_cores": per_s(singles, cpu(singles, *nodes)),
        "cluster_cpu_ratio": cluster_ms / single_ms,
        "cluster_leader_ratio": leader_ms / single_ms,
        "cluster_msgs_ratio": cluster_rate / single_rate if single_rate else float("nan"),
        "load_cores_single": per_s(singles, sum(phase.load_cpu for phase in singles)),
        "load_cores_cluster": per_s(clustered, sum(phase.load_cpu for phase in clustered)),
    }


async def main(args) -> int:
    figures = await (cluster_and_single_node(args) if args.cluster else single_node(args))
    figures |= {"message_bytes": float(args.size), "load_average_1m": os.getloadavg()[0]}
    for name, value in figures.items():
        print(f"{name}={value:.3f}")
    rates = [value for name, value in figures.items() if name.endswith("msgs_per_s")]
    return 0 if all(rates) else 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--queues", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=8, help="channels publishing")
    parser.add_argument("--window", type=int, default=32, help="unconfirmed per publisher")
    parser.add_argument("--prefetch", type=int, default=64, help="per consumer")
    parser.add_argument("--size", type=int, default=700, help="body bytes")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also start a 3-node cluster of its own and measure it beside the default node",
    )
    parser.add_argument(
        "--load-node",
        type=int,
        choices=(1, 2, 3),
        default=1,
        help="with --cluster: the node the load connects to (the queues' leaders are on 1)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="with --cluster: single/cluster pairs, alternated"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, through the `finally` that stops the cluster's nodes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(asyncio.run(main(parse_args())))
