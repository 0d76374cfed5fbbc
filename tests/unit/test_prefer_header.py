"""RFC 7240 Prefer: respond-async and wait=N decide how long the gateway waits."""

from __future__ import annotations

import pytest

from service.gateway.prefer import MAX_WAIT_S, Preference, parse_prefer


def test_no_header_means_no_preference() -> None:
    assert parse_prefer([]) == Preference(respond_async=False, wait=None)


def test_respond_async_is_recognised_case_insensitively() -> None:
    assert parse_prefer(["respond-async"]).respond_async is True
    assert parse_prefer(["Respond-Async"]).respond_async is True


@pytest.mark.parametrize(
    ("header", "seconds"), [("wait=5", 5.0), ("wait=0", 0.0), ("wait=2.5", 2.5), ('wait="7"', 7.0)]
)
def test_wait_is_read_in_seconds(header: str, seconds: float) -> None:
    assert parse_prefer([header]) == Preference(respond_async=False, wait=seconds)


def test_respond_async_and_wait_combined_in_one_header() -> None:
    assert parse_prefer(["respond-async, wait=10"]) == Preference(respond_async=True, wait=10.0)


def test_preferences_spread_over_several_headers_are_all_read() -> None:
    assert parse_prefer(["wait=3", "respond-async"]) == Preference(respond_async=True, wait=3.0)


def test_parameters_after_a_semicolon_do_not_break_the_preference() -> None:
    assert parse_prefer(["respond-async; foo=bar, wait=4; x"]) == Preference(True, 4.0)


def test_unknown_preferences_are_ignored() -> None:
    assert parse_prefer(["return=minimal, handling=lenient"]) == Preference()


@pytest.mark.parametrize("header", ["wait=abc", "wait=", "wait", "wait=nan", ",,,;;=", "=5"])
def test_garbage_wait_is_ignored(header: str) -> None:
    assert parse_prefer([header]).wait is None


def test_garbage_wait_does_not_hide_respond_async() -> None:
    assert parse_prefer(["wait=soon, respond-async"]) == Preference(respond_async=True, wait=None)


def test_negative_wait_is_ignored() -> None:
    assert parse_prefer(["wait=-1"]).wait is None


def test_wait_is_capped_at_the_default_maximum() -> None:
    assert parse_prefer(["wait=3600"]).wait == MAX_WAIT_S
    assert parse_prefer(["wait=inf"]).wait == MAX_WAIT_S


def test_wait_is_capped_at_a_given_maximum() -> None:
    assert parse_prefer(["wait=30"], max_wait=10).wait == 10


def test_first_of_repeated_wait_preferences_wins() -> None:
    assert parse_prefer(["wait=5", "wait=10"]).wait == 5.0
