"""The webhook retry schedule (workers/webhooks.py): growing, jittered, capped delays
that keep a delivery trying for its retry window (24 hours by default)."""

from __future__ import annotations

import random
import statistics

from service.settings import Settings
from workers.webhooks import DeliverySettings

DEFAULTS = DeliverySettings.from_settings(Settings())


def test_the_defaults_are_the_contracts() -> None:
    assert DEFAULTS.timeout_s == 10
    assert DEFAULTS.retry_for_s == 24 * 3600
    assert DEFAULTS.allow_private is False
    assert DEFAULTS.lease_s >= DEFAULTS.timeout_s + 10


def test_delays_double_from_the_base_up_to_the_cap_with_jitter() -> None:
    random.seed(7)
    for failures in range(1, 20):
        ceiling = min(DEFAULTS.retry_max_delay_s, DEFAULTS.retry_base_s * 2 ** (failures - 1))
        delays = [DEFAULTS.retry_delay(failures) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling  # equal jitter
        assert statistics.pstdev(delays) > 0  # spread: retries of many do not align


def test_the_first_retries_come_quickly_and_the_pause_grows() -> None:
    means = [statistics.mean(DEFAULTS.retry_delay(n) for _ in range(300)) for n in range(1, 8)]
    assert means == sorted(means)
    assert means[0] < 5  # seconds: a blip costs a few seconds, not minutes


def test_a_delivery_keeps_trying_for_the_whole_window_then_stops() -> None:
    """Attempts until the next one would fall beyond 24 h from queueing (then parked)."""
    random.seed(3)
    elapsed, attempts = 0.0, 1
    while True:
        delay = DEFAULTS.retry_delay(attempts)
        if elapsed + delay >= DEFAULTS.retry_for_s:
            break
        elapsed += delay
        attempts += 1
    assert elapsed > DEFAULTS.retry_for_s - DEFAULTS.retry_max_delay_s  # the last hour
    assert 20 <= attempts <= 40  # hourly once the cap is reached, not a storm


def test_a_lease_always_outlasts_an_attempt() -> None:
    slow = DeliverySettings.from_settings(Settings(webhook_timeout_s=60, webhook_lease_s=30))
    assert slow.lease_s >= 70
