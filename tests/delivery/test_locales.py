"""Each kind of email, in each shipped locale, rendered and delivered to a real SMTP
server (aiosmtpd) with the right subject; and the locale fallback chain."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from schemas.events import envelope
from service import i18n
from service.emails import EmailContent, store_email
from service.sealing import derive_secret, generate_key_pair
from workers import mailer
from workers.smtp import SmtpConfig, SmtpSender

SUBJECTS = {
    "activation": ("Activate your account", {}),
    "invitation": ("You are invited to join %(organization)s", {"organization": "Mail Co"}),
    "duplicate": ("Someone tried to register with your email address", {}),
    "welcome": ("Welcome to %(organization)s", {"organization": "Mail Co"}),
    "username_taken": ("That user name is taken", {}),
    "password_recovery": ("Reset your password", {}),
    "password_changed": ("Your password was changed", {}),
    "locked_out": ("Your account is temporarily locked", {}),
    "account_deleted": ("Your account was deleted", {}),
}
KEY = derive_secret(generate_key_pair()[1], "test")
RECOVERY_KEY = derive_secret(generate_key_pair()[1], "recovery-token")
SETTINGS = mailer.MailSettings(
    activation_key=KEY,
    invitation_key=KEY,
    recovery_key=RECOVERY_KEY,
    mail_from="x <x@example.com>",
    public_url="http://127.0.0.1:8080",
    activation_valid_hours=48,
    recovery_valid_minutes=60,
)


def expected_subject(kind: str, locale: str) -> str:
    msgid, values = SUBJECTS[kind]
    return i18n.translations((locale, "en")).gettext(msgid) % values


def request(kind: str, tenant_id: uuid.UUID, locale: str) -> EmailContent:
    return EmailContent(
        email_id=uuid.uuid4(),
        tenant_id=tenant_id,
        kind=kind,
        locale=locale,
        to=f"{kind}-{locale}-{uuid.uuid4().hex[:6]}@example.com",
        user_name="zoe",
        name="Zoé",
        activation_url="https://app.example/activate/{activationToken}",
        activation_token_id=uuid.uuid4(),
        invitation_id=uuid.uuid4(),
        expires_at=dt.datetime(2026, 12, 24, 18, 30, tzinfo=dt.UTC),
        user_created_at=dt.datetime(2026, 11, 24, 9, 5, tzinfo=dt.UTC),
        recover_url="https://app.example/recover/{passwordRecoveryToken}",
        recovery_token_id=uuid.uuid4(),
        changed_at=dt.datetime(2026, 11, 25, 7, 45, tzinfo=dt.UTC),
        locked_until=dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC),
    )


async def deliver(pool, mailbox, data: EmailContent):
    async with pool.acquire() as conn:
        await store_email(conn, data)
    command = data.command()
    sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{mailbox.port}"))
    try:
        await mailer.send_email(
            envelope(command),
            command,
            pool=pool,
            sender=sender,
            settings=SETTINGS,
        )
    finally:
        await sender.close()
    return await mailbox.wait_for(lambda m: m["To"] == data.to)


@pytest.mark.parametrize("locale", i18n.SHIPPED)
@pytest.mark.parametrize("kind", list(SUBJECTS))
async def test_each_kind_arrives_in_each_shipped_locale(kind, locale, delivery_pool, org, mailbox):
    data = request(kind, org.id, locale)
    message = await deliver(delivery_pool, mailbox, data)
    subject = expected_subject(kind, locale)
    if locale != "en":
        assert subject != expected_subject(kind, "en"), f"{kind} subject not translated to {locale}"
    assert message["Subject"] == subject
    assert message["Content-Language"] == locale
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@registrar>")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "{{" not in text and "%(" not in text and f'lang="{locale}"' in html
    if locale != "en":  # no sentence of the body left in English (links are the same)
        english = mailer.render(
            data.model_copy(update={"locale": "en"}),
            recipient=mailer.Recipient(organization=org.name, default_locale="en"),
            settings=SETTINGS,
        )
        same = set(text.splitlines()) & set(english.get_body(("plain",)).get_content().splitlines())
        assert {line for line in same if line.strip() and not line.startswith("http")} == set()


@pytest.mark.parametrize(
    ("asked", "tenant_default", "chosen"),
    [("de_AT", "en", "de"), ("pt_BR", "es", "es"), ("ja", "en", "en"), ("hr_HR", "fr", "hr")],
)
async def test_locale_falls_back_along_the_chain(
    asked, tenant_default, chosen, delivery_pool, mailbox
):
    tenant_id = await delivery_pool.fetchval(
        "INSERT INTO tenants (id, name, api_key_hash, default_locale, secret) "
        "VALUES ($1, 'Mail Co', $2, $3, '\\x00') RETURNING id",
        uuid.uuid4(),
        uuid.uuid4().bytes,
        tenant_default,
    )
    message = await deliver(delivery_pool, mailbox, request("welcome", tenant_id, asked))
    assert message["Content-Language"] == chosen
    assert message["Subject"] == expected_subject("welcome", chosen)


async def test_dates_are_written_the_way_the_locale_writes_them(delivery_pool, org, mailbox):
    german = await deliver(delivery_pool, mailbox, request("invitation", org.id, "de"))
    english = await deliver(delivery_pool, mailbox, request("invitation", org.id, "en"))
    assert "24. Dezember 2026" in german.get_body(("plain",)).get_content()
    assert "December 24, 2026" in english.get_body(("plain",)).get_content()
