"""REGISTRAR_AMQP_URL as a list of node URLs: parsed in order, validated, never echoed
with its password."""

from __future__ import annotations

import pytest
from yarl import URL

from service.amqp import parse_node_urls, redacted


def test_one_url_is_a_list_of_one() -> None:
    assert parse_node_urls("amqp://guest:guest@127.0.0.1:5672/") == (
        URL("amqp://guest:guest@127.0.0.1:5672/"),
    )


def test_several_urls_keep_their_order_and_lose_surrounding_spaces() -> None:
    nodes = parse_node_urls(
        "amqp://u:p@rabbit-1:5672/vh, amqps://u:p@rabbit-2:5671/vh ,amqp://u:p@rabbit-3/vh"
    )
    assert [(url.scheme, url.host, url.port) for url in nodes] == [
        ("amqp", "rabbit-1", 5672),
        ("amqps", "rabbit-2", 5671),
        ("amqp", "rabbit-3", None),  # the client default (5672)
    ]
    assert {url.path for url in nodes} == {"/vh"}


def test_a_comma_in_a_password_is_percent_encoded() -> None:
    (node,) = parse_node_urls("amqp://u:a%2Cb@host/")
    assert node.password == "a,b"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "node URL 1 is empty"),
        ("amqp://u:p@a/,,amqp://u:p@b/", "node URL 2 is empty"),
        ("amqp://u:p@a/,", "node URL 2 is empty"),
        ("http://u:secret@a/", "node URL 1 (http://u:******@a/) is not amqp://"),
        ("amqp://u:p@a/,amqp:///vhost", "node URL 2 (amqp:/vhost) is not amqp://"),
        ("amqp://u:secret@a:99999/", "node URL 1 is malformed"),
    ],
)
def test_a_bad_entry_is_named_by_position_without_its_password(value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="REGISTRAR_AMQP_URL") as raised:
        parse_node_urls(value)
    assert complaint in str(raised.value)
    assert "secret" not in str(raised.value)


def test_redacted_masks_the_password_only() -> None:
    assert redacted(URL("amqp://user:secret@host:5672/vh")) == "amqp://user:******@host:5672/vh"
    assert redacted(URL("amqp://host/")) == "amqp://host/"
