"""Webhook destinations (service/ssrf.py): every forbidden address range, the URL rules,
the registration-time resolution and the delivery-time resolver."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from service import ssrf
from service.ssrf import DestinationRefused, ForbiddenAddress, GuardedResolver

# (an address in the range, a word of the reason)
FORBIDDEN = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.254", "private"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),  # cloud metadata services
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.0.0.8", "IETF"),
    ("192.0.2.10", "documentation"),
    ("192.88.99.1", "6to4"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ("64:ff9b:1::1", "NAT64"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
    ("100::1", "discard"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:db8::1", "documentation"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "why"), FORBIDDEN)
def test_every_forbidden_range_is_refused(address: str, why: str) -> None:
    reason = ssrf.forbidden_reason(ipaddress.ip_address(address))
    assert reason is not None and why.lower() in reason.lower()


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert ssrf.forbidden_reason(ipaddress.ip_address(address)) is None


def test_each_listed_range_has_a_forbidden_sample() -> None:
    """No range of the table goes untested above."""
    samples = [ipaddress.ip_address(address) for address, _ in FORBIDDEN]
    for network, why in ssrf.FORBIDDEN_NETWORKS:
        assert any(s.version == network.version and s in network for s in samples), why


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("hooks.example.com/x", "https"),
        ("https:///x", "no host"),
        ("https://user:pw@hooks.example.com/x", "user information"),
        ("https://user@hooks.example.com/x", "user information"),
        ("https://hooks.example.com:99999/x", "malformed"),
        ("https://hooks.example.com/a b", "whitespace"),
        ("https://hooks.example.com/\x00", "control"),
        ("https://hooks.example.com/" + "a" * 2048, "longer"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://[::1]:8443/x", "loopback"),
        ("https://[::ffff:127.0.0.1]/x", "loopback"),
        ("https://[fe80::1%25eth0]/x", "link-local"),
        ("https://10.0.0.7/x", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://2130706433/x", "canonical"),  # 127.0.0.1 as one number
        ("https://0x7f000001/x", "canonical"),
        ("https://127.1/x", "canonical"),
        ("https://0177.0.0.1/x", "canonical"),
        ("https://localhost/x", "loopback"),
        ("https://LOCALHOST./x", "loopback"),
        ("https://api.localhost/x", "loopback"),
    ],
)
def test_urls_that_are_refused_without_resolving(url: str, why: str) -> None:
    with pytest.raises(DestinationRefused, match=why):
        ssrf.check_url_syntax(url, allow_private=False)


def test_allow_private_allows_http_and_private_addresses_but_not_the_rest() -> None:
    for url in ("http://127.0.0.1:8080/hook", "https://10.0.0.7/x", "http://localhost/x"):
        assert ssrf.check_url_syntax(url, allow_private=True)
    with pytest.raises(DestinationRefused, match="https or http"):
        ssrf.check_url_syntax("ftp://127.0.0.1/x", allow_private=True)
    with pytest.raises(DestinationRefused, match="user information"):
        ssrf.check_url_syntax("http://u:p@127.0.0.1/x", allow_private=True)


def test_a_public_url_is_accepted_with_its_port() -> None:
    assert ssrf.check_url_syntax("https://hooks.example.com/x?a=1", allow_private=False) == (
        "hooks.example.com",
        443,
    )
    assert ssrf.check_url_syntax("https://8.8.8.8:8443/", allow_private=False) == ("8.8.8.8", 8443)


def _getaddrinfo(*addresses: str):
    async def fake(host, port, **_kwargs):
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port),
            )
            for a in addresses
        ]

    return fake


async def test_registration_resolves_the_name_and_refuses_any_forbidden_address(
    monkeypatch,
) -> None:
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", _getaddrinfo("93.184.215.14", "10.0.0.5"))
    with pytest.raises(DestinationRefused, match=r"hooks\.example\.com is 10\.0\.0\.5, a private"):
        await ssrf.check_url("https://hooks.example.com/x", allow_private=False)
    monkeypatch.setattr(loop, "getaddrinfo", _getaddrinfo("93.184.215.14"))
    await ssrf.check_url("https://hooks.example.com/x", allow_private=False)


async def test_a_name_that_does_not_resolve_yet_is_accepted(monkeypatch) -> None:
    async def fails(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fails)
    await ssrf.check_url("https://not-yet.example.com/x", allow_private=False)


class _Inner:
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_the_delivery_resolver_connects_only_to_allowed_addresses() -> None:
    """DNS rebinding: what the name resolves to at delivery is checked, and only checked
    addresses reach the connector."""
    mixed = GuardedResolver(_Inner("127.0.0.1", "93.184.215.14", "fd00::1"))
    assert [r["host"] for r in await mixed.resolve("hooks.example.com", 443)] == ["93.184.215.14"]
    rebound = GuardedResolver(_Inner("127.0.0.1"))
    with pytest.raises(ForbiddenAddress, match=r"127\.0\.0\.1, a loopback"):
        await rebound.resolve("hooks.example.com", 443)
    metadata = GuardedResolver(_Inner("169.254.169.254"))
    with pytest.raises(OSError, match="link-local"):
        await metadata.resolve("hooks.example.com", 443)
