"""Worker retry pause grows with the broker's delivery count, up to a cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from workers.runner import MAX_BACKOFF_S, backoff_seconds


@dataclass
class FakeMessage:
    headers: dict[str, Any] | None


@pytest.mark.parametrize(("count", "seconds"), [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0)])
def test_backoff_doubles_with_each_delivery(count: int, seconds: float) -> None:
    assert backoff_seconds(FakeMessage({"x-delivery-count": count})) == seconds


@pytest.mark.parametrize("count", [5, 6, 20, 100])
def test_backoff_is_capped(count: int) -> None:
    assert backoff_seconds(FakeMessage({"x-delivery-count": count})) == MAX_BACKOFF_S


@pytest.mark.parametrize("headers", [None, {}, {"other": 3}])
def test_first_delivery_without_count_waits_one_second(headers: dict[str, Any] | None) -> None:
    assert backoff_seconds(FakeMessage(headers)) == 1.0


def test_count_sent_as_text_is_understood() -> None:
    assert backoff_seconds(FakeMessage({"x-delivery-count": "2"})) == 4.0


@pytest.mark.parametrize("count", ["many", None, [1], b"\xff"])
def test_unreadable_count_falls_back_to_one_second(count: object) -> None:
    assert backoff_seconds(FakeMessage({"x-delivery-count": count})) == 1.0


def test_huge_delivery_count_is_capped_not_an_error() -> None:
    assert backoff_seconds(FakeMessage({"x-delivery-count": 5000})) == MAX_BACKOFF_S
