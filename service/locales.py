"""Locales: which we ship, and picking the best one for a request."""

from __future__ import annotations

from babel.core import negotiate_locale

from service.i18n import SHIPPED

SUPPORTED = SHIPPED  # every locale we have translations for


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags from an Accept-Language header, best first (q=0 dropped)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, index, tag.replace("-", "_")))
    return [tag for _, _, tag in sorted(weighted)]


def best_locale(accept_language: str | None, *, default: str) -> str:
    """The supported locale that best matches the header, else `default`."""
    preferred = parse_accept_language(accept_language)
    match = negotiate_locale(preferred, SUPPORTED)
    # Babel answers in the caller's spelling ("DE"); tags are case-insensitive, ours are not.
    by_lower = {locale.lower(): locale for locale in SUPPORTED}
    return by_lower.get(match.lower(), default) if match else default
