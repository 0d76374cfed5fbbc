"""Accept-Language parsing and picking the best shipped locale (SPEC §3, §7)."""

from __future__ import annotations

import pytest

from service.locales import SUPPORTED, best_locale, parse_accept_language


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_yields_no_tags(header: str | None) -> None:
    assert parse_accept_language(header) == []


def test_tags_are_ordered_by_quality_best_first() -> None:
    header = "en;q=0.5, fr;q=0.9, de"
    assert parse_accept_language(header) == ["de", "fr", "en"]


def test_equal_quality_keeps_header_order() -> None:
    assert parse_accept_language("hr;q=0.7, es;q=0.7, fr") == ["fr", "hr", "es"]


def test_q_zero_means_not_acceptable_and_is_dropped() -> None:
    assert parse_accept_language("de;q=0, en;q=0.0, fr;q=0.000, es") == ["es"]


def test_unparsable_quality_is_treated_as_not_acceptable() -> None:
    assert parse_accept_language("de;q=high, en") == ["en"]


def test_wildcard_is_dropped_and_region_separator_becomes_underscore() -> None:
    assert parse_accept_language("de-AT, *;q=0.1") == ["de_AT"]


def test_spaces_around_parameters_are_tolerated() -> None:
    assert parse_accept_language(" fr ; q=0.4 ,en ; q=0.8") == ["en", "fr"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-AT", "de"),
        ("de-AT,de;q=0.9,en;q=0.8", "de"),
        ("hr-HR", "hr"),
        ("fr-CA;q=0.5, es-MX", "es"),
        ("ja, de;q=0.3", "de"),
        ("en-GB", "en"),
    ],
)
def test_best_locale_falls_back_from_region_to_language(header: str, expected: str) -> None:
    assert best_locale(header, default="en") == expected


@pytest.mark.parametrize("header", ["ja", "zh-Hant-TW, pt-BR;q=0.8", "de;q=0", "*"])
def test_unsupported_languages_give_the_default(header: str) -> None:
    assert best_locale(header, default="fr") == "fr"


def test_no_header_gives_the_default() -> None:
    assert best_locale(None, default="hr") == "hr"


@pytest.mark.parametrize(("header", "expected"), [("DE", "de"), ("EN-us", "en"), ("Fr", "fr")])
def test_best_locale_is_always_a_supported_spelling(header: str, expected: str) -> None:
    locale = best_locale(header, default="en")
    assert locale == expected
    assert locale in SUPPORTED
