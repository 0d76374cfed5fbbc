"""Token-bucket rate limiting with an injected clock (SPEC §3: 429 with Retry-After)."""

from __future__ import annotations

from service.ratelimit import RateLimiter, client_address, parse_networks


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


# Bounded memory: least-recently-used eviction, never a wholesale reset.


def test_memory_is_bounded_and_the_least_recently_used_bucket_goes_first() -> None:
    rl = RateLimiter(rate_per_minute=1, burst=1, max_keys=3, clock=FakeClock())
    for key in ("a", "b", "c"):
        assert rl.take(key) == 0
    assert rl.take("a") > 0  # "a" is now the most recently used
    assert rl.take("d") == 0  # evicts "b", the least recently used
    assert len(rl) == 3
    assert "b" not in rl
    # The others keep their (empty) buckets: a flood of new keys does not reset everyone.
    assert rl.take("a") > 0
    assert rl.take("c") > 0


def test_an_address_flood_never_frees_a_busy_client() -> None:
    rl = RateLimiter(rate_per_minute=1, burst=1, max_keys=100, clock=FakeClock())
    assert rl.take("abuser") == 0
    for i in range(1000):
        rl.take(f"10.0.{i // 256}.{i % 256}")
        if i % 50 == 0:
            assert rl.take("abuser") > 0  # still limited: kept recent by its own requests
    assert len(rl) == 100


# The address that is limited (X-Forwarded-For only from trusted proxies).

PROXIES = parse_networks("10.0.0.0/8, 2001:db8::/32")


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], ()) == "203.0.113.7"
    assert client_address("10.0.0.5", ["198.51.100.1"], ()) == "10.0.0.5"


def test_an_untrusted_peer_cannot_choose_its_address_with_the_header() -> None:
    assert client_address("203.0.113.7", ["198.51.100.1"], PROXIES) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_right_most_untrusted_address_counts() -> None:
    # The client forged "1.2.3.4"; our proxy appended the address it really saw.
    header = ["1.2.3.4, 198.51.100.9, 10.1.1.1"]
    assert client_address("10.0.0.5", header, PROXIES) == "198.51.100.9"
    # Several header lines are one list, in order.
    assert client_address("10.0.0.5", ["1.2.3.4", "198.51.100.9"], PROXIES) == "198.51.100.9"


def test_trusted_peer_without_a_usable_header_counts_as_the_last_trusted_hop() -> None:
    assert client_address("10.0.0.5", [], PROXIES) == "10.0.0.5"
    assert client_address("10.0.0.5", ["10.2.2.2"], PROXIES) == "10.2.2.2"
    assert client_address("10.0.0.5", ["garbage, 10.2.2.2"], PROXIES) == "10.2.2.2"
    assert client_address("10.0.0.5", ["198.51.100.9:4711"], PROXIES) == "198.51.100.9"
    assert client_address("2001:db8::1", ["[2001:db9::5]:80"], PROXIES) == "2001:db9::5"


def test_trusted_proxies_setting_reads_comma_separated_cidrs(monkeypatch) -> None:
    from service.settings import Settings

    monkeypatch.setenv("REGISTRAR_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1 ,::1")
    assert [str(n) for n in Settings().trusted_proxies] == [
        "10.0.0.0/8",
        "192.168.1.1/32",
        "::1/128",
    ]
