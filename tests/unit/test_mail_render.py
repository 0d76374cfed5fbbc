"""Activation and invitation emails: link derivation and the rendered, translated MIME
message (SPEC §3, §4, §7)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from service import i18n, tokens
from service.emails import EmailContent
from service.errors import PermanentError
from workers.mailer import (
    MailSettings,
    Recipient,
    activation_link,
    invitation_link,
    recovery_link,
    render,
)

KEY = b"worker-secret-for-activation-00"
INVITATION_KEY = b"worker-secret-for-invitations-0"
RECOVERY_KEY = b"worker-secret-for-recovery-0000"
TOKEN_ID = uuid.UUID("6c1d1f9e-1b7a-4e33-9d55-5d2a8d4f0c11")
INVITATION_ID = uuid.UUID("9a3c0d52-51f4-4b8e-9f0e-0c4d5e6f7a81")
EXPIRES = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
RECOVERY_ID = uuid.UUID("3b8e5c71-2d4f-4a6b-8c9d-0e1f2a3b4c5d")
RECOVER_URL = "https://app.example.com/recover?t={passwordRecoveryToken}&x=1"
SETTINGS = MailSettings(
    activation_key=KEY,
    invitation_key=INVITATION_KEY,
    recovery_key=RECOVERY_KEY,
    mail_from="Registrar <noreply@example.com>",
    public_url="https://registrar.example/",
    activation_valid_hours=48,
    recovery_valid_minutes=30,
)
ACME = Recipient(organization="Acme", default_locale="en")


def request(**overrides: object) -> EmailContent:
    fields: dict[str, object] = {
        "email_id": uuid.UUID("0e5f3f1c-7a44-4c0e-8d0f-2b1f4d7b9a01"),
        "tenant_id": uuid.uuid4(),
        "kind": "activation",
        "to": "alice@example.com",
        "locale": "en",
        "user_name": "alice",
        "activation_url": "https://app.example.com/activate?t={activationToken}&x=1",
        "activation_token_id": TOKEN_ID,
    }
    fields.update(overrides)
    return EmailContent(**fields)


def invitation(**overrides: object) -> EmailContent:
    fields: dict[str, object] = {
        "email_id": uuid.UUID("1f6a4e2d-8b55-4d1f-9e10-3c2a5e8c0b12"),
        "tenant_id": uuid.uuid4(),
        "kind": "invitation",
        "to": "bob@example.com",
        "locale": "en_US",
        "name": "Bob",
        "invitation_id": INVITATION_ID,
        "expires_at": EXPIRES,
    }
    fields.update(overrides)
    return EmailContent(**fields)


def account_mail(kind: str = "password_recovery", **overrides: object) -> EmailContent:
    """An email of the account life cycle (SPEC §10), with every field those kinds use."""
    fields: dict[str, object] = {
        "email_id": uuid.UUID("2a7b5f3e-9c66-4e20-a021-4d3b6f9d1c23"),
        "tenant_id": uuid.uuid4(),
        "kind": kind,
        "to": "carol@example.com",
        "locale": "en",
        "user_name": "carol",
        "recover_url": RECOVER_URL,
        "recovery_token_id": RECOVERY_ID,
        "changed_at": datetime(2024, 12, 24, 18, 30, tzinfo=UTC),
        "locked_until": datetime(2024, 12, 24, 18, 45, tzinfo=UTC),
    }
    fields.update(overrides)
    return EmailContent(**fields)


def text(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


# --- activation ------------------------------------------------------------------------


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
    message = render(data, recipient=ACME, settings=SETTINGS)
    return data, activation_link(data, KEY), message


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
    assert message["Content-Language"] == "en"
    assert message["X-Registrar-Email-Id"] == str(data.email_id)


def test_render_message_id_is_well_formed_and_names_the_email() -> None:
    data, _, message = rendered()
    message_id = message["Message-ID"]
    assert message_id.startswith("<") and message_id.endswith("@registrar>")
    assert str(data.email_id) in message_id


def test_text_part_contains_the_link_verbatim_and_the_validity() -> None:
    _, link, message = rendered()
    body = text(message)
    assert link in body
    assert "alice" in body
    assert "48 hours" in body


def test_html_part_contains_the_link_html_escaped() -> None:
    _, link, message = rendered()
    body = html(message)
    assert f'href="{link.replace("&", "&amp;")}"' in body
    assert "48 hours" in body
    assert '<html lang="en">' in body


def test_rendered_mail_carries_no_placeholder_or_token_id() -> None:
    _, _, message = rendered()
    raw = message.as_string()
    assert "{activationToken}" not in raw
    assert str(TOKEN_ID) not in raw


def test_activation_mail_for_a_german_recipient_is_german() -> None:
    message = render(request(locale="de"), recipient=ACME, settings=SETTINGS)
    assert message["Subject"] == "Aktivieren Sie Ihr Konto"
    assert message["Content-Language"] == "de"
    assert "Hallo alice," in text(message)
    assert "48 Stunden" in text(message)
    assert activation_link(request(), KEY) in text(message)


# --- invitation ------------------------------------------------------------------------


def test_invitation_link_is_the_hosted_page_with_the_derived_token() -> None:
    token = tokens.derive_token(INVITATION_KEY, INVITATION_ID)
    link = invitation_link(invitation(), INVITATION_KEY, "https://registrar.example/")
    assert link == f"https://registrar.example/invitations/{token}"
    assert invitation_link(invitation(), INVITATION_KEY, "https://registrar.example") == link


def test_invitation_link_is_derived_under_the_invitation_key_not_the_activation_key() -> None:
    message = render(invitation(), recipient=ACME, settings=SETTINGS)
    assert tokens.derive_token(INVITATION_KEY, INVITATION_ID) in text(message)
    assert tokens.derive_token(KEY, INVITATION_ID) not in message.as_string()


def test_invitation_email_without_invitation_id_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError):
        render(invitation(invitation_id=None), recipient=ACME, settings=SETTINGS)


def test_invitation_text_and_html_carry_the_link() -> None:
    message = render(invitation(), recipient=ACME, settings=SETTINGS)
    token = tokens.derive_token(INVITATION_KEY, INVITATION_ID)
    link = f"https://registrar.example/invitations/{token}"
    assert link in text(message)
    assert f'href="{link}"' in html(message)


def test_invitation_for_en_us_is_english_with_the_organization_name() -> None:
    message = render(invitation(locale="en_US"), recipient=ACME, settings=SETTINGS)
    assert message["Subject"] == "You are invited to join Acme"
    assert message["Content-Language"] == "en"
    assert "Hello Bob," in text(message)
    assert "Acme invites you to create your account" in text(message)
    assert '<html lang="en">' in html(message)


def test_invitation_for_de_de_is_german_and_names_the_chosen_shipped_locale() -> None:
    message = render(invitation(locale="de_DE"), recipient=ACME, settings=SETTINGS)
    assert message["Subject"] == "Sie sind eingeladen, Acme beizutreten"
    assert message["Content-Language"] == "de"
    assert "Hallo Bob," in text(message)
    assert "Acme lädt Sie ein" in text(message)
    assert '<html lang="de">' in html(message)
    assert "Einladung annehmen" in html(message)


def test_invitation_expiry_date_is_formatted_for_the_locale() -> None:
    english = render(invitation(locale="en_US"), recipient=ACME, settings=SETTINGS)
    german = render(invitation(locale="de_DE"), recipient=ACME, settings=SETTINGS)
    assert "valid until May 1, 2024" in text(english)
    assert "gültig bis 1. Mai 2024" in text(german)
    assert "1. Mai 2024" in html(german)


def test_invitation_for_an_unshipped_locale_uses_the_tenant_default() -> None:
    german_tenant = Recipient(organization="Acme", default_locale="de")
    message = render(invitation(locale="it_IT"), recipient=german_tenant, settings=SETTINGS)
    assert message["Subject"] == "Sie sind eingeladen, Acme beizutreten"
    assert message["Content-Language"] == "de"


def test_invitation_for_an_unshipped_locale_and_default_falls_back_to_english() -> None:
    tenant = Recipient(organization="Acme", default_locale="it")
    message = render(invitation(locale="pt_BR"), recipient=tenant, settings=SETTINGS)
    assert message["Subject"] == "You are invited to join Acme"
    assert message["Content-Language"] == "en"


def test_invitation_without_a_name_greets_without_one() -> None:
    english = render(invitation(name=None), recipient=ACME, settings=SETTINGS)
    german = render(invitation(name=None, locale="de"), recipient=ACME, settings=SETTINGS)
    assert text(english).startswith("Hello,")
    assert text(german).startswith("Hallo,")
    assert "None" not in english.as_string()


def test_invitation_html_escapes_the_organization_but_the_subject_does_not() -> None:
    shop = Recipient(organization="Müller & <Söhne>", default_locale="en")
    message = render(invitation(), recipient=shop, settings=SETTINGS)
    assert message["Subject"] == "You are invited to join Müller & <Söhne>"
    assert "Müller &amp; &lt;Söhne&gt;" in html(message)
    assert "<Söhne>" not in html(message)
    assert "Müller & <Söhne> invites you" in text(message)


def test_invitation_mail_carries_no_invitation_id() -> None:
    raw = render(invitation(), recipient=ACME, settings=SETTINGS).as_string()
    assert str(INVITATION_ID) not in raw


@pytest.mark.parametrize("locale", [s for s in i18n.SHIPPED if s != i18n.BASE])
def test_every_shipped_locale_renders_an_invitation(locale: str) -> None:
    message = render(invitation(locale=locale), recipient=ACME, settings=SETTINGS)
    assert message["Content-Language"] == locale
    assert message["Subject"] != "You are invited to join Acme"


def test_an_english_reader_of_a_german_tenant_gets_an_english_invitation() -> None:
    german_tenant = Recipient(organization="Acme", default_locale="de")
    message = render(invitation(locale="en_US"), recipient=german_tenant, settings=SETTINGS)
    assert message["Content-Language"] == "en"
    assert message["Subject"] == "You are invited to join Acme"
    assert "Hello Bob," in text(message)


@pytest.mark.parametrize("locale", ["en", "de", "hr"])
def test_the_cached_header_registry_renders_what_the_stdlib_policy_renders(
    locale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """workers.mailer.POLICY only builds header classes and repeated headers once: the
    bytes sent are those of email.policy.default (but for the random MIME boundary)."""
    import email.policy
    import re

    from aiosmtplib.email import flatten_message

    from workers import mailer

    monkeypatch.setattr(mailer, "formatdate", lambda usegmt: "Wed, 01 May 2024 12:30:00 GMT")
    monkeypatch.setattr(mailer, "make_msgid", lambda idstring, domain: f"<{idstring}@{domain}>")
    content = request(locale=locale, to="Zoë <zoe@example.com>", user_name="zoë")
    sender = Recipient(organization="Größe & Co", default_locale="en", mail_from="Größe <g@x.io>")

    def flat(policy) -> bytes:
        monkeypatch.setattr(mailer, "POLICY", policy)
        message = render(content, recipient=sender, settings=SETTINGS)
        message.as_bytes()  # flattened with its own policy, as tests and tools do
        return re.sub(rb"=+\d+==", b"BOUNDARY", flatten_message(message, utf8=True))

    cached = mailer.POLICY
    stdlib = flat(email.policy.default)
    assert flat(cached) == stdlib
    assert flat(cached) == stdlib  # and again, from the cache
    # Only values that repeat are kept: not each message's own MIME boundary (set when
    # it is flattened with the message's policy).
    assert not any("boundary=" in value for _name, value in cached.header_factory._parsed)


# --- account life cycle: password_recovery, password_changed, locked_out, account_deleted


ACCOUNT_KINDS = ("password_recovery", "password_changed", "locked_out", "account_deleted")


def test_recovery_link_replaces_the_placeholder_with_the_token_of_the_recovery_key() -> None:
    link = recovery_link(account_mail(), RECOVERY_KEY)
    token = tokens.derive_token(RECOVERY_KEY, RECOVERY_ID)
    assert link == f"https://app.example.com/recover?t={token}&x=1"
    assert "{passwordRecoveryToken}" not in link


@pytest.mark.parametrize("missing", ["recover_url", "recovery_token_id"])
def test_a_recovery_email_without_its_url_or_token_id_is_a_permanent_error(missing: str) -> None:
    with pytest.raises(PermanentError):
        render(account_mail(**{missing: None}), recipient=ACME, settings=SETTINGS)


def test_the_recovery_mail_links_with_the_recovery_key_not_the_activation_key() -> None:
    message = render(account_mail(), recipient=ACME, settings=SETTINGS)
    link = recovery_link(account_mail(), RECOVERY_KEY)
    raw = message.as_string()
    assert link in text(message)
    assert f'href="{link.replace("&", "&amp;")}"' in html(message)
    for other in (KEY, INVITATION_KEY):
        assert tokens.derive_token(other, RECOVERY_ID) not in raw
    assert "{passwordRecoveryToken}" not in raw
    assert str(RECOVERY_ID) not in raw


def test_the_recovery_mail_names_the_account_and_how_long_the_link_is_valid() -> None:
    message = render(account_mail(), recipient=ACME, settings=SETTINGS)
    assert message["Subject"] == "Reset your password"
    assert "the password of the account carol at Acme" in text(message)
    assert "valid for 30 minutes" in text(message)
    assert "valid for 30 minutes" in html(message)
    assert "your password stays unchanged" in text(message)


def test_the_recovery_mail_for_a_german_recipient_is_german() -> None:
    message = render(account_mail(locale="de_AT"), recipient=ACME, settings=SETTINGS)
    assert message["Subject"] == "Setzen Sie Ihr Passwort zurück"
    assert message["Content-Language"] == "de"
    assert "Hallo carol," in text(message)
    assert "30 Minuten gültig" in text(message)
    assert recovery_link(account_mail(), RECOVERY_KEY) in text(message)


@pytest.mark.parametrize(
    ("kind", "english", "german"),
    [
        (
            "password_changed",
            "changed on December 24, 2024, 6:30:00",
            "am 24. Dezember 2024, 18:30",
        ),
        (
            "locked_out",
            "locked until December 24, 2024, 6:45:00",
            "bis zum 24. Dezember 2024, 18:45",
        ),
    ],
)
def test_the_date_of_a_password_change_or_lock_is_written_the_way_the_locale_writes_it(
    kind: str, english: str, german: str
) -> None:
    en = render(account_mail(kind), recipient=ACME, settings=SETTINGS)
    de = render(account_mail(kind, locale="de"), recipient=ACME, settings=SETTINGS)
    assert english in text(en) and english in html(en)
    assert german in text(de) and german in html(de)


@pytest.mark.parametrize(
    ("kind", "field"), [("password_changed", "changed_at"), ("locked_out", "locked_until")]
)
def test_a_password_change_or_lock_email_without_its_date_is_a_permanent_error(
    kind: str, field: str
) -> None:
    with pytest.raises(PermanentError):
        render(account_mail(kind, **{field: None}), recipient=ACME, settings=SETTINGS)


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("password_changed", "Ihr Passwort wurde geändert"),
        ("locked_out", "Ihr Konto ist vorübergehend gesperrt"),
        ("account_deleted", "Ihr Konto wurde gelöscht"),
    ],
)
def test_the_account_notices_for_a_german_recipient_are_german(kind: str, subject: str) -> None:
    message = render(account_mail(kind, locale="de"), recipient=ACME, settings=SETTINGS)
    assert message["Subject"] == subject
    assert text(message).startswith("Hallo carol,")
    assert "Acme" in text(message)


@pytest.mark.parametrize("kind", ACCOUNT_KINDS)
def test_the_html_part_of_an_account_email_escapes_the_values(kind: str) -> None:
    shop = Recipient(organization="Müller & <Söhne>", default_locale="en")
    data = account_mail(kind, user_name="<b>carol</b>")
    message = render(data, recipient=shop, settings=SETTINGS)
    assert "&lt;b&gt;carol&lt;/b&gt;" in html(message)
    assert "Müller &amp; &lt;Söhne&gt;" in html(message)
    assert "<b>" not in html(message) and "<Söhne>" not in html(message)
    assert "<b>carol</b>" in text(message)
    assert "Müller & <Söhne>" in text(message)
