"""Consuming a queue: one typed handler per routing key, message fate decided by exceptions.

* handler returns            -> ack (its transaction has committed by then)
* RetryableError, or a lost  -> a copy goes to the next retry queue (which returns it to the
  connection / timeout          work queue after its delay) and the original is acked; with
  (service.supervisor)          no retry left, the message is dead-lettered as below
* PermanentError, a message  -> dead-letter queue at once (after the routing key's
  we cannot parse, or any       dead-letter hook), its traceback in the log: a bug does not
  other exception (a bug)       get better by waiting 12 minutes, and `registrar dlq replay`
                                brings the message back once it is fixed
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import ValidationError

from schemas.events import EVENTS, CloudEvent, parse
from service import metrics
from service.amqp import BrokerUnavailable, Publisher
from service.errors import PermanentError
from service.logs import correlation_id
from service.supervisor import is_transient

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, Any], Awaitable[None]]
# Called with (event, data, error=...) before a message is dead-lettered.
DeadLetterHook = Callable[..., Awaitable[None]]
RETRIES_HEADER = "x-registrar-retries"


@dataclass(frozen=True)
class RetryPolicy:
    """Where failed messages wait before their next attempt, in order."""

    publisher: Publisher
    queues: tuple[str, ...]


def retries_of(message: AbstractIncomingMessage) -> int:
    """How many times this message has already been retried."""
    try:
        return max(0, int((message.headers or {}).get(RETRIES_HEADER, 0)))
    except (TypeError, ValueError):
        return 0


def retry_copy(message: AbstractIncomingMessage, retries: int) -> aio_pika.Message:
    """The same message, persistent, counting one more retry."""
    return aio_pika.Message(
        body=message.body,
        content_type=message.content_type,
        message_id=message.message_id,
        type=message.type,
        timestamp=message.timestamp,
        headers={**(message.headers or {}), RETRIES_HEADER: retries},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class Consumer:
    """Feeds one queue's messages to handlers; `stop()` drains what is in flight."""

    def __init__(
        self,
        channel: AbstractChannel,
        queue_name: str,
        handlers: dict[str, Handler],
        *,
        retry: RetryPolicy | None = None,
        on_dead_letter: dict[str, DeadLetterHook] | None = None,
    ):
        self._channel = channel
        self._queue_name = queue_name
        self._handlers = handlers
        self._retry = retry
        self._on_dead_letter = on_dead_letter or {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._queue = None
        self._tag: str | None = None

    async def start(self) -> None:
        self._queue = await self._channel.get_queue(self._queue_name, ensure=True)
        self._tag = await self._queue.consume(self._on_message)
        log.info("consuming", extra={"queue": self._queue_name})

    @property
    def queue_name(self) -> str:
        return self._queue_name

    def status(self) -> str:
        """For /readyz: "ok" while the channel is open and our consumer is registered.
        (aio-pika's robust channel re-registers it by itself after a reconnect.)"""
        if self._tag is None:
            return "not started"
        return "detached" if self._channel.is_closed else "ok"

    async def stop(self) -> None:
        """Stop taking messages, then wait for the ones being handled."""
        if self._queue is not None and self._tag is not None:
            await self._queue.cancel(self._tag)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq cancels a consumer callback when its channel closes (a broker node lost,
        # a restart). Handling must not stop half-way for that: an email sent but not yet
        # recorded as sent would go out again once its claim expired. So it runs in a
        # task of its own, which the channel's close does not reach; its ack then fails
        # and the broker redelivers the message, which the handlers deduplicate.
        task = asyncio.create_task(self._handle_in_context(message))
        self._in_flight.add(task)
        task.add_done_callback(self._handled)
        await asyncio.shield(task)

    async def _handle_in_context(self, message: AbstractIncomingMessage) -> None:
        token = correlation_id.set(message.message_id)
        try:
            await self._handle(message)
        finally:
            correlation_id.reset(token)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Settling it (ack, retry copy, dead letter) failed: its channel went away, and
            # the broker redelivers it.
            log.warning(
                "message not settled with the broker; it comes back",
                extra={"queue": self._queue_name, "error": describe(task.exception())},
            )

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            # Not message.routing_key: a retried message returns through the default
            # exchange under the queue's name. The CloudEvents type still says what it is.
            event = CloudEvent.model_validate_json(message.body)
            routing_key = self._routing_key_of(event)
            _, data = parse(routing_key, message.body)
        except (PermanentError, ValueError, ValidationError) as exc:
            log.error(
                "unprocessable message dead-lettered",
                exc_info=True,
                extra={"error": str(exc)[:500], "queue": self._queue_name},
            )
            metrics.CONSUMED.labels(self._queue_name, "unparseable", "dead_letter").inc()
            await message.reject(requeue=False)
            return
        try:
            await self._handlers[routing_key](event, data)
        except Exception as exc:
            if is_transient(exc):
                await self._retry_later(message, event, data, routing_key, exc)
            else:
                await self._dead_letter(message, event, data, routing_key, describe(exc), exc)
        else:
            await message.ack()
            metrics.CONSUMED.labels(self._queue_name, routing_key, "ack").inc()
            log.info("handled", extra={"routing_key": routing_key})

    def _routing_key_of(self, event: CloudEvent) -> str:
        for key in self._handlers:
            if EVENTS[key][0] == event.type:
                return key
        raise PermanentError(f"no handler for {event.type!r}")

    async def _retry_later(
        self,
        message: AbstractIncomingMessage,
        event: CloudEvent,
        data: Any,
        routing_key: str,
        exc: Exception,
    ) -> None:
        retries = retries_of(message)
        error = describe(exc)
        if self._retry is None or retries >= len(self._retry.queues):
            await self._dead_letter(message, event, data, routing_key, f"gave up: {error}", exc)
            return
        queue = self._retry.queues[retries]
        try:
            await self._retry.publisher.send_to_queue(queue, retry_copy(message, retries + 1))
        except BrokerUnavailable:
            await message.nack(requeue=True)  # could not park it: let the broker redeliver
            return
        await message.ack()
        metrics.CONSUMED.labels(self._queue_name, routing_key, "retry").inc()
        log.warning(
            "handler failed, retrying later",
            exc_info=exc,
            extra={"routing_key": routing_key, "error": error, "retry": retries + 1, "via": queue},
        )

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        event: CloudEvent,
        data: Any,
        routing_key: str,
        error: str,
        exc: BaseException,
    ) -> None:
        hook = self._on_dead_letter.get(routing_key)
        if hook is not None:
            try:
                await hook(event, data, error=error)
            except Exception:
                log.exception("dead-letter hook failed; requeueing")
                await message.nack(requeue=True)
                return
        log.error(
            "message dead-lettered",
            exc_info=exc,
            extra={"routing_key": routing_key, "error": error},
        )
        metrics.CONSUMED.labels(self._queue_name, routing_key, "dead_letter").inc()
        await message.reject(requeue=False)
