"""Token-bucket rate limiting with an injected clock (SPEC §3: 429 with Retry-After)."""

from __future__ import annotations

from service.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: FakeClock, *, rate_per_minute: int = 60, burst: int = 3) -> RateLimiter:
    return RateLimiter(rate_per_minute=rate_per_minute, burst=burst, clock=clock)


def test_a_burst_is_allowed_at_once() -> None:
    rl = limiter(FakeClock())
    assert [rl.take("client") for _ in range(3)] == [0, 0, 0]


def test_beyond_the_burst_retry_after_is_positive_whole_seconds() -> None:
    rl = limiter(FakeClock(), rate_per_minute=6, burst=2)
    rl.take("client")
    rl.take("client")
    wait = rl.take("client")
    assert isinstance(wait, int)
    assert wait == 10  # one token per 10 s at 6/min


def test_retry_after_is_at_least_one_second_even_at_high_rates() -> None:
    rl = limiter(FakeClock(), rate_per_minute=6000, burst=1)
    rl.take("client")
    assert rl.take("client") == 1


def test_tokens_refill_over_time() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_minute=60, burst=1)
    assert rl.take("client") == 0
    assert rl.take("client") > 0
    clock.advance(1.0)
    assert rl.take("client") == 0
    assert rl.take("client") > 0


def test_retry_after_shrinks_as_time_passes() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_minute=6, burst=1)
    rl.take("client")
    assert rl.take("client") == 10
    clock.advance(7.5)
    assert rl.take("client") == 3


def test_refill_never_exceeds_the_burst() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_minute=60, burst=2)
    clock.advance(3600)
    assert [rl.take("client") for _ in range(3)][-1] > 0


def test_refused_requests_do_not_spend_tokens() -> None:
    clock = FakeClock()
    rl = limiter(clock, rate_per_minute=60, burst=1)
    rl.take("client")
    for _ in range(5):
        assert rl.take("client") > 0
    clock.advance(1.0)
    assert rl.take("client") == 0


def test_clients_have_separate_buckets() -> None:
    rl = limiter(FakeClock(), burst=1)
    assert rl.take("a") == 0
    assert rl.take("a") > 0
    assert rl.take("b") == 0
