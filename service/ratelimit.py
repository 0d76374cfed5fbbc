"""Token buckets in memory, per key (each gateway process limits on its own).

The gateway keeps two limiters: one keyed by client address, one keyed by tenant with its
own, larger, budget; a request must pass both. Memory is bounded: beyond `max_keys`
buckets the least recently used one is dropped (a full bucket costs nothing to forget,
and an address flood only evicts the idlest buckets, never everyone's at once).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`rate_per_minute` sustained, `burst` at once; `take` returns seconds to wait or 0."""

    MAX_KEYS = 100_000

    def __init__(
        self,
        *,
        rate_per_minute: int,
        burst: int,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._rate = rate_per_minute / 60.0
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: str) -> bool:
        return key in self._buckets

    def take(self, key: str) -> int:
        """Spend one token for `key`; 0 when allowed, else the whole seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self._max_keys:
                self._buckets.popitem(last=False)  # the least recently used
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))


def parse_networks(value: str | Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (or bare addresses) as networks; ValueError on a bad one."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(
        ipaddress.ip_network(str(item).strip(), strict=False) for item in items if str(item).strip()
    )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The address to limit: the TCP peer, unless the peer is a trusted proxy; then the
    right-most `X-Forwarded-For` address that is not itself a trusted proxy (entries left
    of it are written by the client and prove nothing)."""
    peer_address = _address(peer or "")
    if peer_address is None:
        return peer or "unknown"
    current = peer_address
    if not _is_trusted(current, trusted):
        return str(current)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage from beyond our proxies: the last trusted hop is all we know
        current = address
        if not _is_trusted(current, trusted):
            break
    return str(current)


def _is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
