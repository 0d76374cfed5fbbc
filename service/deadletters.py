"""Operators' view of dead-lettered messages: count them, peek at them, replay them."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from service.amqp import QUEUE_BINDINGS, BrokerUnavailable, Names, Publisher

RETRIES_HEADER = "x-registrar-retries"


@dataclass(frozen=True)
class DeadLetter:
    message_id: str | None
    type: str | None
    reason: str | None  # why the broker dead-lettered it (rejected, delivery_limit, ...)


@dataclass(frozen=True)
class DeadLetterQueue:
    role: str
    queue: str
    messages: int
    sample: list[DeadLetter]


def resolve_role(names: Names, queue: str) -> str:
    """Accept a role (`mailer`), its queue (`registrar.mailer`) or its DLQ name."""
    for role in QUEUE_BINDINGS:
        if queue in (role, names.queue(role), names.dead_letter_queue(role)):
            return role
    choices = ", ".join(QUEUE_BINDINGS)
    raise ValueError(f"unknown queue {queue!r}; choose from {choices}")


async def list_dead_letters(
    connection: AbstractRobustConnection, names: Names, *, peek: int = 5
) -> list[DeadLetterQueue]:
    """Each dead-letter queue with its message count and up to `peek` messages' ids.

    Peeked messages are not acknowledged: closing the channel returns them to the queue.
    """
    result = []
    for role in QUEUE_BINDINGS:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(names.dead_letter_queue(role), passive=True)
            count = queue.declaration_result.message_count
            sample = []
            for _ in range(min(peek, count)):
                message = await queue.get(fail=False, no_ack=False)
                if message is None:
                    break
                deaths = (message.headers or {}).get("x-death") or [{}]
                sample.append(
                    DeadLetter(message.message_id, message.type, str(deaths[0].get("reason", "")))
                )
        except aio_pika.exceptions.ChannelClosed:
            count, sample = 0, []  # never declared: nothing has died there yet
        finally:
            if not channel.is_closed:
                await channel.close()
        result.append(DeadLetterQueue(role, names.dead_letter_queue(role), count, sample))
    return result


async def replay(
    connection: AbstractRobustConnection, publisher: Publisher, names: Names, queue: str
) -> int:
    """Move every message of one dead-letter queue back into its work queue, retry count
    reset. Each is acked only after the broker confirmed its copy: none is lost."""
    role = resolve_role(names, queue)
    channel = await connection.channel()
    moved = 0
    try:
        dlq = await channel.declare_queue(names.dead_letter_queue(role), passive=True)
        while (message := await dlq.get(fail=False, no_ack=False)) is not None:
            headers = {
                k: v
                for k, v in (message.headers or {}).items()
                if k != RETRIES_HEADER and not k.startswith("x-")
            }
            copy = aio_pika.Message(
                body=message.body,
                content_type=message.content_type,
                message_id=message.message_id,
                type=message.type,
                headers=headers,
                timestamp=message.timestamp,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            try:
                await publisher.send_to_queue(names.queue(role), copy)
            except BrokerUnavailable:
                await message.nack(requeue=True)
                raise
            await message.ack()
            moved += 1
    finally:
        await channel.close()
    return moved
