"""Links we put into email stay ours (SPEC §3 "Allowed prefixes").

An activation URL and each of a tenant's allowed prefixes are parsed into scheme, host,
port and path, and compared part by part - never as strings, so
`https://app.example.com.evil.test/` or `https://app.example.com@evil.test/` cannot pass
for `https://app.example.com`. Pure functions, no I/O.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

MAX_LENGTH = 2048
ACTIVATION_PLACEHOLDER = "{activationToken}"
RECOVERY_PLACEHOLDER = "{passwordRecoveryToken}"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"https": 443, "http": 80}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_IPV6_CHARS = frozenset("0123456789abcdef:.")


class LinkError(ValueError):
    """The text is not a URL we would put into an email."""


@dataclass(frozen=True)
class Link:
    """The parts of a URL that decide where it leads."""

    scheme: str
    host: str
    port: int
    path: str
    query: str

    def is_under(self, prefix: Link) -> bool:
        """Same scheme, host and port; path under the prefix's path at a `/` boundary."""
        if (self.scheme, self.host, self.port) != (prefix.scheme, prefix.host, prefix.port):
            return False
        base = prefix.path
        if base.endswith("/"):
            return self.path.startswith(base)
        return self.path == base or self.path.startswith(base + "/")


def _forbidden_char(text: str) -> str | None:
    for char in text:
        if char.isspace() or char == "\\" or unicodedata.category(char) in ("Cc", "Cf"):
            return char
    return None


def _host(parts: SplitResult) -> str:
    netloc = parts.netloc
    if "@" in netloc:
        raise LinkError("must not carry user information (user@host)")
    try:
        host = parts.hostname or ""
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise LinkError("has an invalid port") from None
    del port
    if not host:
        raise LinkError("must name a host")
    if netloc.startswith("["):
        if not set(host) <= _IPV6_CHARS:
            raise LinkError("has an invalid host")
    elif not set(host) <= _HOST_CHARS or host.startswith((".", "-")) or ".." in host:
        raise LinkError("has an invalid host")
    return host


def _path(parts: SplitResult) -> str:
    path = parts.path or "/"
    if not path.startswith("/"):
        raise LinkError("has an invalid path")
    for segment in path.split("/"):
        # Browsers resolve `..` (also written %2e%2e), which would leave the prefix.
        if unquote(segment) in (".", ".."):
            raise LinkError("must not contain . or .. path segments")
    return path


def parse(url: str) -> Link:
    """Parse an absolute https URL (http only for localhost) or raise LinkError."""
    if not isinstance(url, str) or not url:
        raise LinkError("must be a URL")
    if len(url) > MAX_LENGTH:
        raise LinkError(f"must be at most {MAX_LENGTH} characters long")
    bad = _forbidden_char(url)
    if bad is not None:
        raise LinkError(f"must not contain control or whitespace characters ({bad!r})")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise LinkError("must be an https URL")
    host = _host(parts)
    if scheme == "http" and host not in LOCAL_HOSTS:
        raise LinkError("must use https (http only for localhost)")
    return Link(
        scheme=scheme,
        host=host,
        port=parts.port or DEFAULT_PORTS[scheme],
        path=_path(parts),
        query=parts.query,
    )


def parse_prefix(prefix: str) -> Link:
    """An allowed prefix: a URL as above, with neither query, fragment nor placeholder."""
    link = parse(prefix)
    if "{" in prefix or "}" in prefix:
        raise LinkError("must not contain a placeholder")
    if "?" in prefix or "#" in prefix:
        raise LinkError("must not have a query or a fragment")
    return link


def problem(url: str, prefixes: tuple[str, ...] | list[str], placeholder: str) -> str | None:
    """Why `url` may not be mailed for a tenant with these prefixes, or None when it may."""
    try:
        link = parse(url)
    except LinkError as exc:
        return str(exc)
    if url.count(placeholder) != 1:
        return f"must contain the {placeholder} placeholder exactly once"
    if placeholder not in link.path and placeholder not in link.query:
        return f"must have the {placeholder} placeholder in its path or query"
    for prefix in prefixes:
        try:
            allowed = parse_prefix(prefix)
        except LinkError:
            continue  # a prefix stored before prefixes were checked allows nothing
        if link.is_under(allowed):
            return None
    return "is not under an allowed prefix"
