"""Baasic's paging query, the rows a page holds, its links, and totals from counters."""

from __future__ import annotations

import itertools
import random
from urllib.parse import parse_qs, urlsplit

import pytest

from service.errors import ValidationFailed
from service.paging import PageRequest, like_pattern, page_links, parse_page_request, window
from service.user_listing import counted

SORTS = ("userName", "email", "dateCreated")


def parse(**query: str) -> PageRequest:
    return parse_page_request(
        query, sorts=SORTS, default_sort="userName", flags=("isApproved", "isLocked")
    )


def test_defaults_are_the_first_page_of_ten_by_the_default_sort() -> None:
    assert parse() == PageRequest(page=1, rpp=10, sort="userName", descending=False)
    assert parse(page="", rpp="", sort="", searchQuery="  ") == parse()


@pytest.mark.parametrize(
    ("sort", "field", "descending"),
    [
        ("email", "email", False),
        ("EMAIL|DESC", "email", True),
        ("dateCreated|asc", "dateCreated", False),
        (" datecreated | desc ", "dateCreated", True),
        ("|desc", "userName", True),
    ],
)
def test_sort_names_a_field_and_optionally_a_direction(sort, field, descending) -> None:
    asked = parse(sort=sort)
    assert (asked.sort, asked.descending) == (field, descending)
    assert asked.sort_text == f"{field}|{'desc' if descending else 'asc'}"


def test_filters_and_search() -> None:
    asked = parse(isApproved="TRUE", isLocked="false", searchQuery="  Ada L  ", page="3", rpp="100")
    assert asked.filters == {"isApproved": True, "isLocked": False}
    assert (asked.search, asked.page, asked.rpp) == ("Ada L", 3, 100)


def test_every_bad_parameter_is_named_at_once() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse(page="0", rpp="101", sort="password", isApproved="yes", searchQuery="a\x1fb")
    fields = [e["field"] for e in caught.value.extra["errors"]]
    assert fields == ["page", "rpp", "sort", "searchQuery", "isApproved"]


@pytest.mark.parametrize(
    "query",
    [
        {"page": "-1"},
        {"page": "1e3"},
        {"page": "٣"},  # a digit, but not an ASCII one
        {"page": "1000000001"},
        {"page": "9" * 5000},
        {"rpp": "0"},
        {"rpp": " 5"},
        {"sort": "userName|up"},
        {"searchQuery": "x" * 201},
        {"searchQuery": "\x00"},
        {"searchQuery": "\ud800"},
        {"isLocked": "1"},
    ],
)
def test_refused(query: dict[str, str]) -> None:
    with pytest.raises(ValidationFailed):
        parse(**query)


def test_a_page_is_read_from_the_nearer_end() -> None:
    def rows(page: int, rpp: int, total: int):
        return window(PageRequest(page=page, rpp=rpp), total)

    assert rows(1, 10, 95) == (0, 10, False)
    assert rows(5, 10, 95) == (40, 10, False)
    assert rows(6, 10, 95) == (35, 10, True)  # rows 50-59, read from the end: 35 skipped
    assert rows(10, 10, 95) == (0, 5, True)  # the last page skips nothing
    assert rows(11, 10, 95) is None
    assert rows(1, 10, 0) is None
    # Each page holds exactly the rows 0..total-1 it should, whichever end it reads from.
    for total, rpp in itertools.product(range(0, 30), range(1, 8)):
        seen = []
        for page in range(1, total // rpp + 3):
            found = rows(page, rpp, total)
            if found is None:
                continue
            span = range(found.offset, found.offset + found.limit)
            seen += [total - 1 - i for i in reversed(span)] if found.from_end else list(span)
        assert seen == list(range(total)), (total, rpp)


def test_links_name_the_same_query_with_another_page() -> None:
    asked = parse(page="2", rpp="3", sort="email|desc", searchQuery="a&b", isLocked="true")
    links = page_links("/key/users", asked, total=7)
    assert set(links) == {"self", "next", "previous"}
    query = parse_qs(urlsplit(links["next"].href).query)
    assert query == {
        "page": ["3"],
        "rpp": ["3"],
        "sort": ["email|desc"],
        "searchQuery": ["a&b"],
        "isLocked": ["true"],
    }
    assert set(page_links("/key/users", parse(rpp="3", page="3"), total=7)) == {"self", "previous"}
    assert set(page_links("/key/users", parse(rpp="7"), total=7)) == {"self"}
    assert set(page_links("/key/users", parse(page="9"), total=7)) == {"self", "previous"}


def test_like_pattern_takes_wildcards_literally() -> None:
    assert like_pattern("100%_a\\b") == "%100\\%\\_a\\\\b%"


def test_totals_from_counters_agree_with_counting() -> None:
    rng = random.Random(7)
    for _ in range(50):
        people = [(rng.random() < 0.6, rng.random() < 0.2) for _ in range(rng.randrange(40))]
        counts = {
            "users": len(people),
            "approved": sum(a for a, _ in people),
            "locked": sum(lock for _, lock in people),
            "approved_locked": sum(a and lock for a, lock in people),
        }
        for approved, locked in itertools.product((None, True, False), repeat=2):
            filters = {
                k: v for k, v in (("isApproved", approved), ("isLocked", locked)) if v is not None
            }
            expected = sum(
                1 for a, lock in people if approved in (None, a) and locked in (None, lock)
            )
            assert counted(counts, filters) == expected
