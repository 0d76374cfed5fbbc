"""RabbitMQ: connection, topology and a confirming publisher.

Three exchanges (SPEC §5): `{prefix}.commands` (internal; only our work queues are bound
to it, only the gateway and the workers may write to it), `{prefix}.events` (public
facts; other systems bind their own queues; no queue of ours listens there, so nothing
published on it makes a worker act) and `{prefix}.dlx` (dead letters).

A process with `REGISTRAR_AMQP_DECLARE=true` (the default; workers, development) declares
the whole topology at start-up (declarations are idempotent). With `false` (the gateway
under its least-privilege broker user, which may not configure anything) it only checks,
with passive declarations, that the exchanges exist (pre-provisioned from
deploy/rabbitmq/definitions.json or declared by a worker) and fails start-up otherwise.
Either way the gateway never publishes into an exchange with no queue bound behind it:
commands are published mandatory.

`REGISTRAR_AMQP_URL` may name the nodes of a cluster, comma-separated: a process connects
to the first node that answers and, when that node is lost, fails over to the next one
(FailoverConnection). Every queue is a quorum queue, replicated on up to three nodes of
the cluster (RabbitMQ's default initial group size), so a node's loss loses no message.
See docs/broker-cluster.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, AMQPException
from aio_pika.robust_connection import RobustConnection
from aiormq.exceptions import AMQPError
from yarl import URL

from schemas.events import CONTENT_TYPE, CloudEvent, is_command
from service import metrics
from service.settings import Settings

log = logging.getLogger(__name__)

# queue role -> command routing keys it consumes (bound on `{prefix}.commands` only).
# Each role gets `{prefix}.{role}`, a DLQ and retry queues.
QUEUE_BINDINGS: dict[str, tuple[str, ...]] = {
    "registration": (
        "register.requested",
        "activation.requested",
        "activation.resend.requested",
        "password.recovery.requested",
        "password.reset.requested",
        "password.change.requested",
        "account.delete.requested",
    ),
    "invitation": ("invite.requested", "invitation.accept.requested"),
    "mailer": ("email.requested",),
}
DELIVERY_LIMIT = 5
# Arguments of every queue that dead-letters. RabbitMQ's default (at-most-once) drops a
# message whose dead-lettering fails (target queue full or unavailable); at-least-once
# keeps it in its queue until the target confirms it, and requires reject-publish (with
# drop-head it silently falls back to at-most-once). Needs RabbitMQ 3.10 with the
# `stream_queue` feature flag enabled; quorum queues only.
DEAD_LETTERING: dict[str, Any] = {
    "x-overflow": "reject-publish",
    "x-dead-letter-strategy": "at-least-once",
}


class BrokerUnavailable(Exception):
    """The broker did not confirm the message (down, timed out, queue full, unroutable)."""


@dataclass(frozen=True)
class Names:
    """Exchange and queue names under one installation prefix."""

    prefix: str

    @property
    def commands(self) -> str:
        """Internal: commands to our own workers."""
        return f"{self.prefix}.commands"

    @property
    def events(self) -> str:
        """Public: facts other systems consume."""
        return f"{self.prefix}.events"

    @property
    def exchanges(self) -> tuple[str, ...]:
        return (self.commands, self.events, self.dead_letters)

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dlx"

    def queue(self, role: str) -> str:
        return f"{self.prefix}.{role}"

    def dead_letter_queue(self, role: str) -> str:
        return f"{self.prefix}.{role}.dlq"

    def retry_queue(self, role: str, delay_s: float) -> str:
        # The delay is in the name: a queue's TTL cannot change once it is declared.
        return f"{self.prefix}.{role}.retry.{round(delay_s * 1000)}ms"

    def all_queues(self, retry_delays: tuple[float, ...] = ()) -> list[str]:
        """Every queue of this installation (for operators' tooling and test cleanup)."""
        return [
            name
            for role in QUEUE_BINDINGS
            for name in (
                self.queue(role),
                self.dead_letter_queue(role),
                *(self.retry_queue(role, delay) for delay in retry_delays),
            )
        ]


# A node that accepts TCP but never answers the handshake (file handles exhausted, still
# booting) must not hold a connection attempt, first or after a failover, for ever.
NODE_ATTEMPT_S = 10.0
# After a failed attempt (every node tried once in turn), before the next one.
RECONNECT_INTERVAL_S = 2.0
SCHEMES = ("amqp", "amqps")


def parse_node_urls(value: str) -> tuple[URL, ...]:
    """The node URLs of `REGISTRAR_AMQP_URL`: one URL, or several separated by commas (a
    comma inside a password is written %2C). Raises ValueError naming the bad entry by its
    position and without its password: URLs carry credentials."""
    entries = [entry.strip() for entry in value.split(",")]
    urls = []
    for position, entry in enumerate(entries, start=1):
        if not entry:
            raise ValueError(f"REGISTRAR_AMQP_URL: node URL {position} is empty")
        try:
            url = URL(entry)
            url.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ValueError(f"REGISTRAR_AMQP_URL: node URL {position} is malformed") from exc
        if url.scheme not in SCHEMES or not url.host:
            raise ValueError(
                f"REGISTRAR_AMQP_URL: node URL {position} ({redacted(url)}) is not "
                "amqp://[user:password@]host[:port][/vhost] or amqps://…"
            )
        urls.append(url)
    return tuple(urls)


def redacted(url: URL) -> str:
    """A node URL fit for a log line: the password masked."""
    return str(url.with_password("******") if url.password else url)


class FailoverConnection(RobustConnection):
    """A robust connection over the nodes of a cluster.

    aio-pika's RobustConnection reconnects only to its own URL. This one moves to the next
    node of the list (round robin) whenever its connection is lost or an attempt fails, so
    a process follows the cluster when its node dies: the next attempt goes to another
    node at once, and the channels, the consumers and the publisher-confirm channel are
    restored there as usual. Every lost-connection path of RobustConnection (a live
    connection closed, an attempt that failed, a restore that failed) passes through
    `_on_connection_close`, which is where the node changes.
    """

    def __init__(self, nodes: tuple[URL, ...], first: int = 0, **kwargs: Any) -> None:
        super().__init__(nodes[first], **kwargs)
        self._nodes = nodes
        self._node = first

    @property
    def node(self) -> int:
        """The position (from 0) in the list of the node this connection uses or tries."""
        return self._node

    async def _on_connection_close(self, closing: asyncio.Future) -> None:
        if not self.close_called and len(self._nodes) > 1:
            lost = self.url
            self._node = (self._node + 1) % len(self._nodes)
            self.url = self._nodes[self._node]
            if self.connection_attempt:  # had been connected: `connect` reports the rest
                log.warning(
                    "RabbitMQ node %s lost or unreachable; the next attempt goes to %s",
                    redacted(lost),
                    redacted(self.url),
                )
        await super()._on_connection_close(closing)


async def connect(
    url: str, *, name: str = "registrar", attempt_timeout_s: float = NODE_ATTEMPT_S
) -> AbstractRobustConnection:
    """A connection to the first node of `url` (see parse_node_urls) that answers; it
    reconnects, to the next node when its own is lost, and restores its channels by
    itself. Raises the last node's error when none answers. `name` is the connection
    name the broker shows (`rabbitmqctl list_connections client_properties`);
    `attempt_timeout_s` bounds each attempt on each node, the first and every reconnection."""
    nodes = parse_node_urls(url)
    error: BaseException | None = None
    for first in range(len(nodes)):
        connection = FailoverConnection(
            nodes,
            first,
            client_properties={"connection_name": name},
            reconnect_interval=RECONNECT_INTERVAL_S,
        )
        try:
            await connection.connect(timeout=attempt_timeout_s)
            return connection
        except BaseException as exc:
            # Also when cancelled: a connection given up must not keep reconnecting.
            with contextlib.suppress(Exception):
                await connection.close()
            if not isinstance(exc, CONNECTION_EXCEPTIONS):
                raise
            error = exc
            log.warning(
                "RabbitMQ node %s unreachable: %s", redacted(nodes[first]), type(exc).__name__
            )
    raise error


@dataclass(frozen=True)
class QueueSpec:
    """One queue as declared: name, arguments, and (exchange, routing key) bindings."""

    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...] = ()


def queue_specs(
    names: Names, *, max_length: int, retry_delays: tuple[float, ...] = ()
) -> list[QueueSpec]:
    """Every queue of the topology. deploy/rabbitmq/definitions.json must agree (tested).

    Every queue is a quorum queue. A retry queue holds a message for its TTL, then
    dead-letters it straight back into its work queue (default exchange, routing key =
    queue name): a delay without a timer. Every queue that dead-letters does so
    at-least-once (see DEAD_LETTERING): a message leaves it only once its target has
    confirmed it, so neither a retry nor a dead letter can be dropped on the way.
    """
    specs = []
    for role, keys in QUEUE_BINDINGS.items():
        queue_name = names.queue(role)
        specs.append(
            QueueSpec(
                names.dead_letter_queue(role),
                {"x-queue-type": "quorum"},
                ((names.dead_letters, queue_name),),
            )
        )
        specs.append(
            QueueSpec(
                queue_name,
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": names.dead_letters,
                    "x-dead-letter-routing-key": queue_name,
                    # Backpressure: a full queue nacks publishes (reject-publish, in
                    # DEAD_LETTERING), the gateway answers 503.
                    "x-max-length": max_length,
                    # A message that keeps crashing its consumer ends in the DLQ.
                    "x-delivery-limit": DELIVERY_LIMIT,
                    **DEAD_LETTERING,
                },
                tuple((names.commands, key) for key in keys),
            )
        )
        specs.extend(
            QueueSpec(
                names.retry_queue(role, delay),
                {
                    "x-queue-type": "quorum",
                    "x-message-ttl": round(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue_name,
                    **DEAD_LETTERING,
                },
            )
            for delay in retry_delays
        )
    return specs


async def declare_topology(
    channel: AbstractChannel,
    names: Names,
    *,
    max_length: int,
    retry_delays: tuple[float, ...] = (),
) -> dict[str, AbstractExchange]:
    """Declare the three exchanges and every queue of `queue_specs`, with their bindings;
    returns the exchanges by name."""
    exchanges = {
        name: await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        for name in names.exchanges
    }
    for spec in queue_specs(names, max_length=max_length, retry_delays=retry_delays):
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for exchange, key in spec.bindings:
            await queue.bind(exchanges[exchange], routing_key=key)
    return exchanges


async def find_exchanges(channel: AbstractChannel, names: Names) -> dict[str, AbstractExchange]:
    """The exchanges, checked with passive declarations (no configure permission needed);
    raises if one is missing, which closes the channel."""
    return {name: await channel.get_exchange(name, ensure=True) for name in names.exchanges}


class Publisher:
    """Publishes CloudEvents with publisher confirms; returns only once confirmed."""

    def __init__(
        self,
        channel: AbstractChannel,
        *,
        commands: AbstractExchange,
        events: AbstractExchange,
        timeout: float,
    ) -> None:
        self._channel = channel
        self._commands = commands
        self._events = events
        self._timeout = timeout

    @property
    def is_connected(self) -> bool:
        return not self._channel.is_closed

    async def publish(
        self, routing_key: str, event: CloudEvent, *, body: bytes | None = None
    ) -> None:
        """Publish persistently and wait for the broker's confirm (or raise BrokerUnavailable).

        `body` is the event already serialized (`model_dump_json(exclude_none=True)`), when
        the caller has it: the gateway serializes a command once, for the outbox and here.

        The routing key decides the exchange (schemas.events.is_command): a command goes to
        `{prefix}.commands` mandatory, so a command no queue of ours receives is an error
        instead of being confirmed and dropped; an event goes to `{prefix}.events` without
        mandatory, since its consumers may not have bound a queue yet.
        """
        command = is_command(routing_key)
        exchange = self._commands if command else self._events
        message = aio_pika.Message(
            body=body if body is not None else event.model_dump_json(exclude_none=True).encode(),
            content_type=CONTENT_TYPE,
            message_id=str(event.id),
            type=event.type,
            timestamp=event.time,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            # A nack (queue full) raises DeliveryError, a return (unroutable) PublishError.
            # The deadline covers the wait for a reconnection too (a robust channel waits
            # for its connection before it publishes): during a failover the caller gets
            # its confirm from the next node or, past the deadline, an error to retry on.
            async with asyncio.timeout(self._timeout):
                await exchange.publish(message, routing_key=routing_key, mandatory=command)
        except (AMQPError, AMQPException, TimeoutError, ConnectionError, RuntimeError) as exc:
            metrics.PUBLISH_FAILED.labels(routing_key).inc()
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc
        metrics.PUBLISHED.labels(routing_key).inc()

    async def send_to_queue(self, queue_name: str, message: aio_pika.Message) -> None:
        """Put a message straight into one queue (default exchange), confirmed."""
        try:
            async with asyncio.timeout(self._timeout):  # see publish
                await self._channel.default_exchange.publish(
                    message, routing_key=queue_name, mandatory=True
                )
        except (AMQPError, AMQPException, TimeoutError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc


async def open_publisher(
    connection: AbstractRobustConnection,
    names: Names,
    *,
    max_length: int,
    timeout: float,
    retry_delays: tuple[float, ...] = (),
    declare: bool = True,
) -> Publisher:
    """A confirm-mode channel wrapped in a Publisher, with the topology declared
    (`declare`) or only found (see the module docstring)."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    if declare:
        exchanges = await declare_topology(
            channel, names, max_length=max_length, retry_delays=retry_delays
        )
    else:
        exchanges = await find_exchanges(channel, names)
    return Publisher(
        channel,
        commands=exchanges[names.commands],
        events=exchanges[names.events],
        timeout=timeout,
    )


async def publisher_for(connection: AbstractRobustConnection, settings: Settings) -> Publisher:
    """`open_publisher` with this installation's names, limits and retry delays."""
    return await open_publisher(
        connection,
        Names(settings.amqp_prefix),
        max_length=settings.queue_max_length,
        timeout=settings.confirm_timeout_s,
        retry_delays=settings.retry_delays_s,
        declare=settings.amqp_declare,
    )
