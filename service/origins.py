"""Browser origins a tenant allows (CORS, SPEC §3), in the form browsers send them.

An origin is `scheme://host[:port]`: http or https, a host, no path, query, fragment or
userinfo. It is kept lower-case and without the scheme's default port, which is how a
browser writes its `Origin` header, so that checking one is a plain set lookup.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    pass


def normalize(value: str) -> str:
    """The origin `value` names, normalized (OriginError when it is not one)."""
    if any(c.isspace() or ord(c) < 32 for c in value) or len(value) > 300:
        raise OriginError("has control or whitespace characters, or is too long")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise OriginError(f"is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError("must be http or https")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise OriginError("must name a host, without user or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise OriginError("must be scheme://host[:port], without a path, query or fragment")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    suffix = f":{port}" if port is not None and port != DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{suffix}"


def normalize_all(values: list[str]) -> list[str]:
    """Each origin normalized, duplicates dropped; ValueError naming the first bad one."""
    seen: dict[str, None] = {}
    for value in values:
        try:
            seen[normalize(value)] = None
        except OriginError as exc:
            raise ValueError(f"allowed origin {value!r} {exc}") from None
    return list(seen)
