"""REGISTRAR_SMTP_URL parsing (SPEC §2, §7: STARTTLS/TLS/auth from the URL)."""

from __future__ import annotations

import pytest

from workers.smtp import SmtpConfig


def test_plain_smtp_url_defaults_to_port_25_without_tls_or_auth() -> None:
    assert SmtpConfig.from_url("smtp://mail.example.com") == SmtpConfig(
        host="mail.example.com", port=25
    )


def test_credentials_are_percent_decoded_and_starttls_read_from_query() -> None:
    config = SmtpConfig.from_url("smtp://user:pa%40ss@mail.example.com:587?starttls=true")
    assert config == SmtpConfig(
        host="mail.example.com",
        port=587,
        use_tls=False,
        start_tls=True,
        username="user",
        password="pa@ss",
    )


def test_smtps_means_implicit_tls_on_port_465() -> None:
    config = SmtpConfig.from_url("smtps://mail.example.com")
    assert (config.port, config.use_tls, config.start_tls) == (465, True, False)


def test_smtps_keeps_an_explicit_port() -> None:
    assert SmtpConfig.from_url("smtps://mail.example.com:2465").port == 2465


@pytest.mark.parametrize("value", ["1", "yes", "on", "TRUE"])
def test_starttls_accepts_common_truthy_spellings(value: str) -> None:
    assert SmtpConfig.from_url(f"smtp://h?starttls={value}").start_tls is True


@pytest.mark.parametrize("value", ["false", "0", "no", ""])
def test_starttls_is_off_otherwise(value: str) -> None:
    assert SmtpConfig.from_url(f"smtp://h?starttls={value}").start_tls is False


def test_timeout_is_read_from_query() -> None:
    assert SmtpConfig.from_url("smtp://h?timeout=2.5").timeout == 2.5


@pytest.mark.parametrize("url", ["http://mail.example.com", "mail.example.com", "lmtp://h"])
def test_unsupported_scheme_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported SMTP URL scheme"):
        SmtpConfig.from_url(url)
