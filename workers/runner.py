"""Consuming a queue: one typed handler per routing key, message fate decided by exceptions.

* handler returns          -> ack (its transaction has committed by then)
* PermanentError / bad msg -> reject without requeue: the dead-letter queue
* anything else            -> requeue after a growing pause; the quorum queue's
                              delivery limit dead-letters a message that never succeeds
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import ValidationError

from schemas.events import CloudEvent, parse
from service.errors import PermanentError
from service.logs import correlation_id

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent, Any], Awaitable[None]]
MAX_BACKOFF_S = 30.0


def backoff_seconds(message: AbstractIncomingMessage) -> float:
    """1, 2, 4 ... seconds by how often the broker has delivered this message before."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    try:
        return min(2.0 ** min(int(count), 16), MAX_BACKOFF_S)
    except (TypeError, ValueError):
        return 1.0


class Consumer:
    """Feeds one queue's messages to handlers; `stop()` drains what is in flight."""

    def __init__(self, channel: AbstractChannel, queue_name: str, handlers: dict[str, Handler]):
        self._channel = channel
        self._queue_name = queue_name
        self._handlers = handlers
        self._in_flight: set[asyncio.Task[None]] = set()
        self._queue = None
        self._tag: str | None = None

    async def start(self) -> None:
        self._queue = await self._channel.get_queue(self._queue_name, ensure=True)
        self._tag = await self._queue.consume(self._on_message)
        log.info("consuming", extra={"queue": self._queue_name})

    async def stop(self) -> None:
        """Stop taking messages, then wait for the ones being handled."""
        if self._queue is not None and self._tag is not None:
            await self._queue.cancel(self._tag)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        token = correlation_id.set(message.message_id)
        try:
            await self._handle(message)
        finally:
            correlation_id.reset(token)
            if task is not None:
                self._in_flight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        routing_key = message.routing_key or ""
        handler = self._handlers.get(routing_key)
        try:
            if handler is None:
                raise PermanentError(f"no handler for {routing_key!r}")
            event, data = parse(routing_key, message.body)
        except (PermanentError, ValueError, ValidationError) as exc:
            log.error("unprocessable message dead-lettered", extra={"error": str(exc)[:500]})
            await message.reject(requeue=False)
            return
        try:
            await handler(event, data)
        except PermanentError as exc:
            log.error(
                "message dead-lettered", extra={"routing_key": routing_key, "error": str(exc)}
            )
            await message.reject(requeue=False)
        except Exception as exc:
            delay = backoff_seconds(message)
            log.warning(
                "handler failed, requeueing",
                extra={"routing_key": routing_key, "error": repr(exc)[:500], "delay_s": delay},
            )
            await asyncio.sleep(delay)
            await message.nack(requeue=True)
        else:
            await message.ack()
            log.info("handled", extra={"routing_key": routing_key})
