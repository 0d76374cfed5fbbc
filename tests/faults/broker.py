"""RabbitMQ seen from outside the service.

* EventLog — the audit queue: a durable queue of the harness bound to `{prefix}.events`
  with `#`, exactly as another system would bind one, consumed for the whole run.
* Replayer — dup_race's forced redeliveries: every command seen is published once more,
  unchanged, after a short random delay, so that two workers race on copies of it.
* delete_topology — everything declared under the run's prefix goes at the end.

Both consumers use the caller's robust connection (service.amqp.connect), so they
survive broker_restart and a cluster's node loss: the channel, the durable queue's
binding and the consumer are restored on reconnect, and unacknowledged messages come
back (counted once by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import defaultdict

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from tests.faults.common import progress

# The exchange commands travel on (SPEC §5: the internal `{prefix}.commands`).
COMMANDS_EXCHANGE_SUFFIX = "commands"
COMMAND_KEYS = ("register.requested", "invite.requested", "email.requested")
EVENTS_EXCHANGE_SUFFIX = "events"
AUDITED_KEYS = ("user.registered", "invitation.sent")
# Set on the harness's own copies so that the replayer does not replay them again.
REPLAY_MARKER = "x-faults-replay"


class EventLog:
    """The audit queue and what arrived on it.

    Kept per (routing key, email address): the set of distinct CloudEvents ids. Consumers
    deduplicate on the id, so a redelivered copy counts once, while two different ids for
    the same address are two events (a duplicate).
    """

    def __init__(self, connection: AbstractRobustConnection, prefix: str) -> None:
        self.connection = connection
        self.prefix = prefix
        self.queue_name = f"{prefix}.faults.audit"
        self.malformed = 0
        self._ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._channel = None

    async def bind(self) -> None:
        """Declare, bind and consume the audit queue (once; later calls do nothing).

        Called after the first gateway is ready: the service declares its exchanges and
        an outside system binds to what exists.
        """
        if self._channel is not None:
            return
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=200)
        exchange = await channel.get_exchange(f"{self.prefix}.{EVENTS_EXCHANGE_SUFFIX}")
        # Quorum, like the service's queues: on a cluster it outlives the loss of a node.
        queue = await channel.declare_queue(
            self.queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message)
        self._channel = channel

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = json.loads(message.body)
            email = (event.get("data") or {}).get("email")
            if message.routing_key in AUDITED_KEYS and isinstance(email, str):
                event_id = str(event.get("id") or message.message_id)
                self._ids[(message.routing_key, email.lower())].add(event_id)
        except (ValueError, AttributeError):
            self.malformed += 1
        # A lost ack (broker going down) only means a redelivery, which dedupes on id.
        with contextlib.suppress(Exception):
            await message.ack()

    def ids(self, routing_key: str, email: str) -> set[str]:
        return set(self._ids.get((routing_key, email.lower()), ()))

    async def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
            self._channel = None


class Replayer:
    """Publishes every command once more, with the same body and properties.

    Bound with a queue of its own to the commands exchange. The copy keeps body,
    message_id (= CloudEvents id), type and content_type, and goes out after a random
    delay of up to `max_delay_s`, so it often reaches another worker while the first
    copy is still being handled: the race a redelivery after a lost ack produces.
    """

    def __init__(
        self, connection: AbstractRobustConnection, prefix: str, *, max_delay_s: float
    ) -> None:
        self.connection = connection
        self.prefix = prefix
        self.max_delay_s = max_delay_s
        self.seen = 0
        self.replayed = 0
        self.failed = 0
        self._tasks: set[asyncio.Task] = set()
        self._channel = None
        self._queue = None
        self._exchange = None
        self._consumer_tag = None

    async def start(self) -> None:
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=200)
        self._exchange = await self._channel.get_exchange(
            f"{self.prefix}.{COMMANDS_EXCHANGE_SUFFIX}"
        )
        self._queue = await self._channel.declare_queue(
            f"{self.prefix}.faults.replay", durable=True
        )
        for key in COMMAND_KEYS:
            await self._queue.bind(self._exchange, routing_key=key)
        self._consumer_tag = await self._queue.consume(self._on_message)

    @property
    def pending(self) -> int:
        """Copies still waiting for their delay (the drain waits for them)."""
        return len(self._tasks)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if not (message.headers or {}).get(REPLAY_MARKER):
            self.seen += 1
            task = asyncio.create_task(self._replay(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        with contextlib.suppress(Exception):
            await message.ack()

    async def _replay(self, original: AbstractIncomingMessage) -> None:
        await asyncio.sleep(random.uniform(0, self.max_delay_s))
        copy = aio_pika.Message(
            body=original.body,
            message_id=original.message_id,
            type=original.type,
            content_type=original.content_type,
            timestamp=original.timestamp,
            headers={**(original.headers or {}), REPLAY_MARKER: 1},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await self._exchange.publish(copy, routing_key=original.routing_key)
            self.replayed += 1
        except Exception as exc:
            self.failed += 1
            progress(f"replayer: could not re-publish {original.message_id}: {exc!r}")

    async def stop(self) -> None:
        """Stop consuming, let pending copies go out, delete the replay queue."""
        if self._channel is None:
            return
        with contextlib.suppress(Exception):
            await self._queue.cancel(self._consumer_tag)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._queue.delete(if_unused=False, if_empty=False)
        with contextlib.suppress(Exception):
            await self._channel.close()
        self._channel = None


async def _rabbitmqctl_names(what: str) -> list[str]:
    """Names from `rabbitmqctl list_queues|list_exchanges`."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        what,
        "--quiet",
        "--no-table-headers",
        "name",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return out.decode().split()


async def delete_topology(connection: AbstractRobustConnection, prefix: str) -> int:
    """Delete every queue and exchange named `{prefix}.…`, whoever declared it.

    Listing them (rather than naming the ones the service declares today) also catches
    queues and exchanges the service adds later. Returns how many were deleted.
    """
    deleted = 0
    channel = await connection.channel()
    try:
        for queue in await _rabbitmqctl_names("list_queues"):
            if queue.startswith(f"{prefix}."):
                await channel.queue_delete(queue)
                deleted += 1
        for exchange in await _rabbitmqctl_names("list_exchanges"):
            if exchange.startswith(f"{prefix}."):
                await channel.exchange_delete(exchange)
                deleted += 1
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    return deleted
