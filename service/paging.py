"""Baasic's paging query (`page`, `rpp`, `sort`, `searchQuery`, yes/no filters) and what
a page is made of: which rows it holds and its HAL links. Shared by the back office's
lists of users and of roles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlencode

from schemas.http import Link, is_plain_text
from service.errors import ValidationFailed

RPP_DEFAULT, RPP_MAX = 10, 100
PAGE_MAX = 1_000_000_000  # far past any data; keeps offsets within 64 bits
SEARCH_MAX = 200
FLAG_VALUES = {"true": True, "false": False}


@dataclass(frozen=True)
class PageRequest:
    """What a client asked for: page `page` (from 1) of `rpp` rows, sorted by `sort` (a
    field's wire name), optionally only rows matching `search` and `filters`."""

    page: int = 1
    rpp: int = RPP_DEFAULT
    sort: str = ""
    descending: bool = False
    search: str | None = None
    filters: Mapping[str, bool] = field(default_factory=dict)

    @property
    def sort_text(self) -> str:
        return f"{self.sort}|{'desc' if self.descending else 'asc'}"


class Window(NamedTuple):
    """The rows of one page: `limit` rows after `offset`, counted from the end when
    `from_end` (then they come last first, in the opposite order)."""

    offset: int
    limit: int
    from_end: bool


def window(request: PageRequest, total: int) -> Window | None:
    """Where the page lies among `total` rows, read from the nearer end (a last page
    skips nothing), or None for a page past the last."""
    start = (request.page - 1) * request.rpp
    if start >= total:
        return None
    end = min(start + request.rpp, total)
    if start <= total - end:
        return Window(offset=start, limit=end - start, from_end=False)
    return Window(offset=total - end, limit=end - start, from_end=True)


def _whole_number(text: str, name: str, low: int, high: int, errors: list) -> int:
    value = int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None
    if value is None or not low <= value <= high:
        errors.append({"field": name, "message": f"must be a whole number from {low} to {high}"})
        return low
    return value


def _sort(text: str, sorts: Sequence[str], default: str, errors: list) -> tuple[str, bool]:
    name, _, direction = text.partition("|")
    by_lower = {s.lower(): s for s in sorts}
    sort = by_lower.get(name.strip().lower()) if name.strip() else default
    descending = direction.strip().lower() == "desc"
    if sort is None or direction.strip().lower() not in ("", "asc", "desc"):
        errors.append(
            {"field": "sort", "message": f"must be one of {', '.join(sorts)}, then |asc or |desc"}
        )
        return default, False
    return sort, descending


def _search(text: str, errors: list) -> str | None:
    text = text.strip()
    if not text:
        return None
    if (
        len(text) > SEARCH_MAX
        or not is_plain_text(text)
        or any(ord(c) < 32 or c == "\x7f" for c in text)
    ):
        errors.append(
            {
                "field": "searchQuery",
                "message": f"must be at most {SEARCH_MAX} characters, without control characters",
            }
        )
        return None
    return text


def parse_page_request(
    query: Mapping[str, str],
    *,
    sorts: Sequence[str],
    default_sort: str,
    flags: Sequence[str] = (),
) -> PageRequest:
    """The paging query of a list, or a 400 naming every bad parameter."""
    errors: list[dict[str, str]] = []
    page = _whole_number(query.get("page") or "1", "page", 1, PAGE_MAX, errors)
    rpp = _whole_number(query.get("rpp") or str(RPP_DEFAULT), "rpp", 1, RPP_MAX, errors)
    sort, descending = _sort(query.get("sort", ""), sorts, default_sort, errors)
    # Control characters are refused: U+001F joins the fields searched together.
    search = _search(query.get("searchQuery", ""), errors)
    filters = {}
    for name in flags:
        value = query.get(name, "").strip().lower()
        if value in FLAG_VALUES:
            filters[name] = FLAG_VALUES[value]
        elif value:
            errors.append({"field": name, "message": "must be true or false"})
    if errors:
        raise ValidationFailed("the paging query is invalid", errors=errors)
    return PageRequest(page, rpp, sort, descending, search, filters)


def page_links(path: str, request: PageRequest, total: int) -> dict[str, Link]:
    """HAL links: `self`, `next` while rows follow, `previous` after the first page."""

    def href(page: int) -> str:
        params: dict[str, object] = {"page": page, "rpp": request.rpp, "sort": request.sort_text}
        if request.search:
            params["searchQuery"] = request.search
        for name, value in request.filters.items():
            params[name] = "true" if value else "false"
        return f"{path}?{urlencode(params)}"

    links = {"self": Link(href=href(request.page))}
    if request.page * request.rpp < total:
        links["next"] = Link(href=href(request.page + 1))
    if request.page > 1:
        links["previous"] = Link(href=href(request.page - 1))
    return links


def like_pattern(phrase: str) -> str:
    """An ILIKE pattern matching `phrase` anywhere, its wildcards taken literally."""
    escaped = phrase.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
