"""Retry bookkeeping of the worker runner: how many retries a message has had, and the
copy parked in a retry queue."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest

from workers.runner import RETRIES_HEADER, retries_of, retry_copy


@dataclass
class FakeMessage:
    headers: dict[str, Any] | None
    body: bytes = b"{}"
    content_type: str = "application/cloudevents+json"
    message_id: str = "id-1"
    type: str = "registrar.email.requested.v1"
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


@pytest.mark.parametrize("headers", [None, {}, {"other": 3}])
def test_a_message_never_retried_counts_zero(headers: dict[str, Any] | None) -> None:
    assert retries_of(FakeMessage(headers)) == 0


@pytest.mark.parametrize(("value", "count"), [(1, 1), (4, 4), ("2", 2), (-3, 0), ("x", 0)])
def test_retry_count_is_read_from_our_header_and_sanitized(value: Any, count: int) -> None:
    assert retries_of(FakeMessage({RETRIES_HEADER: value})) == count


def test_retry_copy_keeps_the_message_and_counts_one_more_retry() -> None:
    original = FakeMessage({"keep": "me", RETRIES_HEADER: 1})
    copy = retry_copy(original, 2)
    assert copy.body == original.body and copy.message_id == original.message_id
    assert copy.type == original.type and copy.content_type == original.content_type
    assert copy.headers == {"keep": "me", RETRIES_HEADER: 2}
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
