"""Activation email: link derivation and the rendered MIME message (SPEC §3, §7)."""

from __future__ import annotations

import uuid

import pytest

from schemas.events import EmailRequested
from service import tokens
from service.errors import PermanentError
from workers.mailer import activation_link, render

KEY = b"worker-secret-for-activation-00"
TOKEN_ID = uuid.UUID("6c1d1f9e-1b7a-4e33-9d55-5d2a8d4f0c11")


def request(**overrides: object) -> EmailRequested:
    fields: dict[str, object] = {
        "email_id": uuid.UUID("0e5f3f1c-7a44-4c0e-8d0f-2b1f4d7b9a01"),
        "tenant_id": uuid.uuid4(),
        "kind": "activation",
        "to": "alice@example.com",
        "locale": "de",
        "user_name": "alice",
        "activation_url": "https://app.example.com/activate?t={activationToken}&x=1",
        "activation_token_id": TOKEN_ID,
    }
    fields.update(overrides)
    return EmailRequested(**fields)


def test_activation_link_replaces_the_placeholder_with_the_derived_token() -> None:
    link = activation_link(request(), KEY)
    token = tokens.derive_token(KEY, TOKEN_ID)
    assert link == f"https://app.example.com/activate?t={token}&x=1"
    assert "{activationToken}" not in link


def test_activation_link_differs_under_another_key() -> None:
    assert activation_link(request(), KEY) != activation_link(request(), b"other key")


def test_activation_link_without_token_id_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError):
        activation_link(request(activation_token_id=None), KEY)


def test_activation_link_without_url_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError):
        activation_link(request(activation_url=None), KEY)


def rendered():
    data = request()
    link = activation_link(data, KEY)
    message = render(data, sender="Registrar <noreply@example.com>", link=link, valid_hours=48)
    return data, link, message


def test_render_builds_multipart_alternative_with_text_and_html() -> None:
    _, _, message = rendered()
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]


def test_render_sets_headers_for_automated_mail() -> None:
    data, _, message = rendered()
    assert message["Subject"] == "Activate your account"
    assert message["From"] == "Registrar <noreply@example.com>"
    assert message["To"] == "alice@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    # English-only until translations land (issue 4): the header names what was rendered.
    assert message["Content-Language"] == "en"
    assert message["X-Registrar-Email-Id"] == str(data.email_id)


def test_render_message_id_is_well_formed_and_names_the_email() -> None:
    data, _, message = rendered()
    message_id = message["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith("@registrar>")
    assert str(data.email_id) in message_id


def test_text_part_contains_the_link_verbatim_and_the_validity() -> None:
    _, link, message = rendered()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert link in text
    assert "alice" in text
    assert "48 hours" in text


def test_html_part_contains_the_link_html_escaped() -> None:
    _, link, message = rendered()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f'href="{link.replace("&", "&amp;")}"' in html
    assert "48 hours" in html


def test_rendered_mail_carries_no_placeholder_or_token_id() -> None:
    _, _, message = rendered()
    raw = message.as_string()
    assert "{activationToken}" not in raw
    assert str(TOKEN_ID) not in raw
