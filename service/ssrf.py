"""Where a webhook may go: destination checks against server-side request forgery.

A webhook URL is chosen by a tenant, and registrar POSTs to it from inside the
installation's network. Unless REGISTRAR_WEBHOOK_ALLOW_PRIVATE=true (development and
tests), a destination must be `https` and every address it resolves to must be globally
routable: not loopback, private (RFC 1918, fc00::/7), link-local, multicast, unspecified,
shared (CGNAT), reserved, documentation or benchmarking space, nor an IPv6 form that
embeds such an IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo).

It is checked twice: when the endpoint is registered (`check_url`, which also resolves
the name), and at each delivery by the HTTP client's resolver (`GuardedResolver`), so
that the address connected to is the address checked — a name that resolved to a public
address at registration and to 127.0.0.1 later (DNS rebinding) is refused then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_CHARS = 2048
RESOLVE_TIMEOUT_S = 3.0

# (network, why it is refused). Anything else that Python does not consider globally
# reachable is refused as well (`forbidden_reason`).
_FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "private (unique local)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
FORBIDDEN_NETWORKS = tuple((ipaddress.ip_network(net), why) for net, why in _FORBIDDEN)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What socket.inet_aton would read as an IPv4 address although it is not dotted-quad
# (2130706433, 0x7f.1, 0177.0.0.1, 127.1): refused rather than interpreted.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)
_LOCAL_NAMES = ("localhost", "localhost.")


class DestinationRefused(ValueError):
    """A webhook destination that is not allowed (the message says why)."""


class ForbiddenAddress(OSError):
    """Raised by GuardedResolver: an OSError, so aiohttp reports it as a failed connect
    (ClientConnectorError) and the delivery is retried like any other failure."""


def forbidden_reason(address: IPAddress) -> str | None:
    """Why `address` may not be a webhook destination, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = forbidden_reason(embedded)
            return None if reason is None else f"{reason} (in {address})"
    for network, why in FORBIDDEN_NETWORKS:
        if address.version == network.version and address in network:
            return why
    if address.is_multicast:
        return "multicast"
    if not address.is_global:
        return "not globally routable"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 (64:ff9b::/96) address stands for."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_address(text: str) -> IPAddress | None:
    """An IP address literal (IPv6 zone ids dropped), or None for a name."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def check_address(address: IPAddress, *, host: str) -> None:
    """DestinationRefused unless `address` (what `host` names) may be connected to."""
    reason = forbidden_reason(address)
    if reason is not None:
        raise DestinationRefused(f"{host} is {address}, a {reason} address")


def check_url_syntax(url: str, *, allow_private: bool) -> tuple[str, int]:
    """(host, port) of an acceptable webhook URL, or DestinationRefused saying why.

    No resolution here: an IP literal is checked, a name is left to `check_url` (at
    registration) and GuardedResolver (at delivery)."""
    if len(url) > MAX_URL_CHARS:
        raise DestinationRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise DestinationRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"the URL is malformed: {exc}") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise DestinationRefused(f"the URL must be {' or '.join(schemes)}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise DestinationRefused("the URL must not carry user information (credentials)")
    host = parts.hostname
    if not host:
        raise DestinationRefused("the URL has no host")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    if allow_private:
        return host, port
    address = parse_address(host)
    if address is not None:
        check_address(address, host=host)
    elif _NUMERIC_HOST.match(host):
        raise DestinationRefused(f"{host} is not a canonical IP address")
    elif host.lower() in _LOCAL_NAMES or host.lower().rstrip(".").endswith(".localhost"):
        raise DestinationRefused(f"{host} is a loopback name")
    return host, port


async def check_url(url: str, *, allow_private: bool) -> None:
    """The registration-time check: syntax, then every address the host resolves to.

    A name that does not resolve (yet) is accepted: nothing can be connected to through
    it, and each delivery checks again what it resolves to by then."""
    host, port = check_url_syntax(url, allow_private=allow_private)
    if allow_private or parse_address(host) is not None:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        return
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address is not None:
            check_address(address, host=host)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses a webhook may connect to.

    The client connects to what the resolver returns, so the check and the connection
    see the same addresses (no window for a DNS answer that changes in between). A
    literal IP in the URL bypasses resolvers in aiohttp: `check_url_syntax` runs before
    each request for that."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refused: tuple[str, str] | None = None
        for result in results:
            address = parse_address(result["host"])
            reason = "unparseable" if address is None else forbidden_reason(address)
            if reason is None:
                allowed.append(result)
            elif refused is None:
                refused = (result["host"], reason)
        if not allowed:
            shown, reason = refused or ("nothing", "missing")
            raise ForbiddenAddress(f"{host} resolves to {shown}, a {reason} address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
