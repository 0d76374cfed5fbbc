"""What one RabbitMQ node does with quorum queues: confirmed publishes + consumed acks.

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

The broker is shared with whatever else uses it: its CPU figure includes their traffic
too (run it when the machine is quiet, and say how quiet it was: the load
average is printed). `name=value` lines last on stdout; progress on stderr.

    .venv/bin/python bench/broker_capacity.py [--seconds 20] [--queues 2]
        [--publishers 8] [--window 32] [--size 700]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
import uuid
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


async def main(args) -> int:
    prefix = f"capacity_{uuid.uuid4().hex[:8]}"
    body = os.urandom(args.size // 2).hex().encode()[: args.size]
    connection = await aio_pika.connect(AMQP_URL)
    consumed = 0
    try:
        setup = await connection.channel()
        names = [f"{prefix}.q{i}" for i in range(args.queues)]
        for name in names:
            await setup.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

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
        node = node_on_port(AMQP_PORT)
        if node is None:
            progress(f"no beam.smp found listening on port {AMQP_PORT}: broker CPU unknown")
        start, own0, consumed0 = time.perf_counter(), own_cpu(), consumed
        broker0 = cpu_of(node) if node else None
        progress(f"measuring {args.seconds:.0f} s")
        await asyncio.sleep(args.seconds)
        elapsed = time.perf_counter() - start
        broker1 = cpu_of(node) if node else None
        own, done = own_cpu() - own0, consumed - consumed0
        broker = broker1 - broker0 if broker0 is not None and broker1 is not None else float("nan")
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
    figures = {
        "broker_msgs_per_s": done / elapsed,
        "broker_cpu_ms_per_msg": broker / max(done, 1) * 1000,
        "broker_cores": broker / elapsed,
        "load_cores": own / elapsed,
        "message_bytes": float(args.size),
        "load_average_1m": os.getloadavg()[0],
    }
    for name, value in figures.items():
        print(f"{name}={value:.3f}")
    return 0 if done else 1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--queues", type=int, default=2)
    parser.add_argument("--publishers", type=int, default=8, help="channels publishing")
    parser.add_argument("--window", type=int, default=32, help="unconfirmed per publisher")
    parser.add_argument("--prefetch", type=int, default=64, help="per consumer")
    parser.add_argument("--size", type=int, default=700, help="body bytes")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
