"""Allowed origins are kept the way browsers send them, so checking one is a lookup."""

from __future__ import annotations

import pytest

from service.origins import OriginError, normalize, normalize_all


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com/", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_origins_are_normalized_as_browsers_write_them(given, kept):
    assert normalize(given) == kept


@pytest.mark.parametrize(
    "bad",
    [
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/path",
        "https://app.example.com?q=1",
        "https://user:pw@app.example.com",
        "https://app.example.com:99999",
        "https://app.example.com\n",
        "*",
        "null",
    ],
)
def test_what_is_not_an_origin_is_refused(bad):
    with pytest.raises(OriginError):
        normalize(bad)


def test_a_list_loses_duplicates_and_names_the_bad_origin():
    assert normalize_all(["https://a.example", "https://A.example/"]) == ["https://a.example"]
    with pytest.raises(ValueError, match="'nope'"):
        normalize_all(["https://a.example", "nope"])
