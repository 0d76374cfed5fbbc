"""Links stay ours: activation URLs compared with allowed prefixes as parsed URLs (SPEC §3)."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import links
from service.tenants import Tenant, check_prefixes

P = links.ACTIVATION_PLACEHOLDER
HOST = "https://app.example.com"


def problem(url: str, *prefixes: str) -> str | None:
    return links.problem(url, prefixes or (HOST,), P)


def tenant(*prefixes: str) -> Tenant:
    return Tenant(
        id=uuid.uuid4(),
        name="t",
        registration_enabled=True,
        captcha="none",
        activation_url_prefixes=prefixes,
        duplicates="conflict",
        default_locale="en",
        secret=b"s",
    )


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        (f"{HOST}/a?t={P}", HOST),
        (f"{HOST}/a/{P}", HOST + "/"),
        (f"{HOST}/app/{P}", HOST + "/app"),
        (f"{HOST}/app/x?t={P}", HOST + "/app/"),
        (f"{HOST}/app?t={P}", HOST + "/app"),
        (f"HTTPS://APP.Example.COM/a/{P}", HOST),  # scheme and host are case-insensitive
        (f"https://app.example.com:443/a/{P}", HOST),  # default port normalised
        (f"{HOST}/a/{P}", "https://app.example.com:443/"),
        (f"http://localhost:3000/activate/{P}", "http://localhost:3000"),
        (f"http://127.0.0.1/a/{P}", "http://127.0.0.1/"),
        (f"http://[::1]:8080/a/{P}", "http://[::1]:8080/"),
        (f"{HOST}/a%20b/{P}", HOST),  # percent-encoded is fine
        (f"{HOST}/a/{P}#done", HOST),
    ],
)
def test_urls_under_a_prefix_are_allowed(url: str, prefix: str) -> None:
    assert problem(url, prefix) is None
    assert tenant(prefix).allows_activation_url(url)


@pytest.mark.parametrize(
    "url",
    [
        f"https://app.example.com.evil.test/a?t={P}",  # host suffix
        f"https://app.example.com@evil.test/a?t={P}",  # userinfo
        f"https://user:pw@app.example.com/a?t={P}",
        f"https://app.example.com\\@evil.test/a?t={P}",
        f"https://evil.test/app.example.com/{P}",
        f"https://app.example.com:8443/a/{P}",  # another port
        f"http://app.example.com/a/{P}",  # http for a non-local host
        f"ftp://app.example.com/a/{P}",
        f"//app.example.com/a/{P}",
        f"/a/{P}",
        f"javascript:alert(1)//{P}",
        f"{HOST}/a\r\nLocation: https://evil.test/{P}",  # CR/LF
        f"{HOST}/a\tb/{P}",
        f"{HOST}/a b/{P}",
        f"{HOST}/a\x00/{P}",
        f"{HOST}/a\u200b/{P}",  # zero-width space (format character)
        f"{HOST}/{'a' * 8192}/{P}",  # 8 kB of path
        f"{HOST}/a/{P}/{P}",  # two placeholders
        f"{HOST}/a/{{activation_token}}",  # no placeholder
        f"{HOST}/a/",
        f"https://{P}.app.example.com/a",  # placeholder in the host
        f"{HOST}/a#{P}",  # placeholder in the fragment only
        f"{HOST}/../admin/{P}",  # dot segments leave the prefix once resolved
        f"{HOST}/%2e%2e/admin/{P}",
        f"https://app.example.com:99999/a/{P}",
        "",
    ],
)
def test_urls_that_leave_the_prefix_or_are_malformed_are_refused(url: str) -> None:
    assert problem(url) is not None
    assert not tenant(HOST).allows_activation_url(url)


def test_a_path_prefix_matches_at_a_slash_boundary_only() -> None:
    assert problem(f"{HOST}/appx/{P}", HOST + "/app") == "is not under an allowed prefix"
    assert problem(f"{HOST}/app/{P}", HOST + "/app") is None
    assert problem(f"{HOST}/ap/{P}", HOST + "/app/") is not None


def test_http_prefix_is_only_for_local_hosts() -> None:
    with pytest.raises(links.LinkError):
        links.parse_prefix("http://app.example.com/")
    assert links.parse_prefix("http://localhost:5173/").port == 5173


@pytest.mark.parametrize(
    "prefix",
    [
        "app.example.com",
        "https://",
        "https://app.example.com@evil.test/",
        "https://app.example.com/?x=1",
        f"https://app.example.com/{P}",
        "http://app.example.com/",
        "https://app.example.com/a b",
        "https://app.example.com/\n",
        "ftp://app.example.com/",
    ],
)
def test_bad_prefixes_are_refused_at_tenant_creation(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        check_prefixes([HOST, prefix])


def test_a_stored_bad_prefix_allows_nothing() -> None:
    assert not tenant("https://app.example.com@").allows_activation_url(f"{HOST}/a/{P}")


def test_no_prefixes_allow_nothing() -> None:
    assert not tenant().allows_activation_url(f"{HOST}/a/{P}")


labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
segments = st.lists(labels, min_size=0, max_size=4).map(lambda parts: "/".join(parts))


@given(host=labels, evil=labels, path=segments)
def test_any_host_that_merely_starts_like_the_allowed_one_is_refused(
    host: str, evil: str, path: str
) -> None:
    prefix = f"https://{host}.example"
    for url in (
        f"https://{host}.example.{evil}/{path}/{P}",
        f"https://{host}.example@{evil}.test/{path}/{P}",
        f"https://{host}.example{evil}/{path}/{P}",
    ):
        assert problem(url, prefix) is not None


@given(base=segments, rest=segments, query=st.booleans())
def test_any_path_under_the_prefix_path_is_allowed(base: str, rest: str, query: bool) -> None:
    prefix = f"{HOST}/{base}" if base else HOST
    tail = f"{rest}?t={P}" if query else f"{rest}/{P}".lstrip("/")
    url = f"{prefix.rstrip('/')}/{tail}"
    assert problem(url, prefix) is None


@given(base=labels, extra=labels, rest=segments)
def test_a_sibling_path_that_shares_a_start_is_refused(base: str, extra: str, rest: str) -> None:
    assert problem(f"{HOST}/{base}{extra}/{rest}/{P}", f"{HOST}/{base}") is not None


@given(url=st.text(max_size=200))
def test_parse_never_fails_with_anything_but_link_error(url: str) -> None:
    with contextlib.suppress(links.LinkError):
        links.parse(url)


@given(char=st.characters(categories=["Cc", "Zs", "Zl", "Zp"]))
def test_any_control_or_space_character_is_refused(char: str) -> None:
    assert problem(f"{HOST}/a{char}b/{P}") is not None
