"""The mailer handler against real PostgreSQL and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from functools import partial

import asyncpg
import pytest

from schemas.events import CloudEvent, EmailRequested, InviteRequested, envelope, parse
from service import invitations, tokens
from service.emails import EmailContent, store_email
from service.errors import PermanentError, RetryableError
from service.sealing import derive_secret
from service.settings import Settings
from service.tenants import Tenant
from tests.conftest import free_port, text_of
from tests.integration.conftest import ACTIVATION_URL, MakeTenant
from workers import mailer
from workers.invitation import invite_user
from workers.registration import register_user
from workers.smtp import SmtpConfig, SmtpSender

VALID_HOURS = 48


@pytest.fixture
async def smtp(mailbox) -> AsyncIterator[SmtpSender]:
    sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{mailbox.port}"))
    yield sender
    await sender.close()


@pytest.fixture
async def dead_smtp() -> AsyncIterator[SmtpSender]:
    """A sender whose server is not listening: every send fails to connect."""
    sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{free_port()}?timeout=3"))
    yield sender
    await sender.close()


def mail_settings(token_key: bytes, settings: Settings, private_key: str) -> mailer.MailSettings:
    """MailSettings built the way cli/workers.py builds them."""
    return mailer.MailSettings(
        activation_key=token_key,
        invitation_key=derive_secret(private_key, "invitation-token"),
        recovery_key=derive_secret(private_key, "recovery-token"),
        mail_from=settings.mail_from,
        public_url=settings.public_url,
        activation_valid_hours=VALID_HOURS,
        recovery_valid_minutes=max(1, int(settings.recovery_ttl_s // 60)),
        lease_s=settings.email_lease_s,
    )


def send_with(sender: SmtpSender, *, pool: asyncpg.Pool, token_key: bytes, settings: Settings):
    """send_email wired the way cli/workers.py wires it."""
    assert settings.seal_private_key is not None
    private_key = settings.seal_private_key.get_secret_value()
    return partial(
        mailer.send_email,
        pool=pool,
        sender=sender,
        settings=mail_settings(token_key, settings, private_key),
    )


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


async def requested_email(pool: asyncpg.Pool, tenant: Tenant, **overrides) -> EmailContent:
    """An emails row (activation) as the registration worker writes it; its command is
    `.command()`, see `command_of`."""
    email_id = uuid.uuid4()
    fields = {
        "email_id": email_id,
        "tenant_id": tenant.id,
        "kind": "activation",
        "to": f"mail-{uuid.uuid4().hex[:10]}@example.com",
        "locale": "en",
        "user_name": f"user-{email_id.hex[:6]}",
        "activation_url": ACTIVATION_URL,
        "activation_token_id": uuid.uuid4(),
    }
    content = EmailContent(**(fields | overrides))
    async with pool.acquire() as conn:
        await store_email(conn, content)
    return content


def command_of(content: EmailContent) -> tuple[CloudEvent, EmailRequested]:
    """The `email.requested` message naming this email, as the mailer receives it."""
    command = content.command()
    return envelope(command), command


async def delivered_events(pool: asyncpg.Pool, email_id: uuid.UUID) -> list[dict]:
    rows = await pool.fetch(
        "SELECT body FROM outbox WHERE routing_key = 'email.delivered' "
        "AND body->'data'->>'emailId' = $1",
        str(email_id),
    )
    return [r["body"] for r in rows]


def addressed_to(address: str):
    return lambda message: message["To"] == address


async def test_send_email_delivers_the_activation_link_with_the_derived_token_and_records_it(
    pool: asyncpg.Pool, settings: Settings, token_key: bytes, tenant: Tenant, mailbox, smtp
) -> None:
    data = await requested_email(pool, tenant)
    send = send_with(smtp, pool=pool, token_key=token_key, settings=settings)

    await send(*command_of(data))

    message = await mailbox.wait_for(addressed_to(data.to), timeout=5)
    token = tokens.derive_token(token_key, data.activation_token_id)
    link = ACTIVATION_URL.replace("{activationToken}", token)
    assert link in text_of(message)
    assert link in message.get_body(preferencelist=("html",)).get_content()
    assert data.user_name in text_of(message)
    assert message["Subject"] == "Activate your account"
    assert message["From"] == settings.mail_from
    assert message["X-Registrar-Email-Id"] == str(data.email_id)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "en"

    row = await pool.fetchrow("SELECT * FROM emails WHERE id = $1", data.email_id)
    assert (row["status"], row["attempts"]) == ("sent", 1)
    assert row["sent_at"] is not None
    [delivered] = await delivered_events(pool, data.email_id)
    assert delivered["type"] == "registrar.email.delivered.v1"
    assert delivered["subject"] == str(data.email_id)
    assert delivered["data"] == {
        "emailId": str(data.email_id),
        "tenantId": str(tenant.id),
        "kind": "activation",
        "to": data.to,
        "attempts": 1,
    }


async def test_redelivery_of_a_sent_email_request_sends_no_second_email(
    pool: asyncpg.Pool, settings: Settings, token_key: bytes, tenant: Tenant, mailbox, smtp
) -> None:
    data = await requested_email(pool, tenant)
    send = send_with(smtp, pool=pool, token_key=token_key, settings=settings)
    event, command = command_of(data)
    await send(event, command)
    await mailbox.wait_for(addressed_to(data.to), timeout=5)

    await send(event, command)

    await asyncio.sleep(0.3)  # a second message, had one been sent, would be in by now
    assert len(mailbox.received(addressed_to(data.to))) == 1
    assert len(await delivered_events(pool, data.email_id)) == 1
    assert await pool.fetchval("SELECT attempts FROM emails WHERE id = $1", data.email_id) == 1


async def test_an_unreachable_smtp_server_raises_retryable_error_and_counts_the_attempt(
    pool: asyncpg.Pool, settings: Settings, token_key: bytes, tenant: Tenant, dead_smtp
) -> None:
    data = await requested_email(pool, tenant)
    send = send_with(dead_smtp, pool=pool, token_key=token_key, settings=settings)

    for attempt in (1, 2):
        with pytest.raises(RetryableError):
            await send(*command_of(data))
        row = await pool.fetchrow("SELECT * FROM emails WHERE id = $1", data.email_id)
        assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", attempt, None)

    assert await delivered_events(pool, data.email_id) == []


async def test_a_retry_after_smtp_failures_delivers_and_reports_every_attempt(
    pool: asyncpg.Pool,
    settings: Settings,
    token_key: bytes,
    tenant: Tenant,
    mailbox,
    smtp,
    dead_smtp,
) -> None:
    data = await requested_email(pool, tenant)
    event, command = command_of(data)
    with pytest.raises(RetryableError):
        await send_with(dead_smtp, pool=pool, token_key=token_key, settings=settings)(
            event, command
        )

    await send_with(smtp, pool=pool, token_key=token_key, settings=settings)(event, command)

    await mailbox.wait_for(addressed_to(data.to), timeout=5)
    assert await pool.fetchval("SELECT attempts FROM emails WHERE id = $1", data.email_id) == 2
    [delivered] = await delivered_events(pool, data.email_id)
    assert delivered["data"]["attempts"] == 2


async def test_the_email_requested_by_the_registration_worker_carries_a_working_activation_token(
    pool: asyncpg.Pool,
    settings: Settings,
    token_key: bytes,
    private_key: str,
    hasher,
    tenant: Tenant,
    mailbox,
    smtp,
    new_request,
) -> None:
    """Registration worker -> outbox row -> mailer: the mailed token matches the stored hash."""
    email = f"flow-{uuid.uuid4().hex[:10]}@example.com"
    request = await new_request(tenant, email=email, user_name=f"flow{uuid.uuid4().hex[:8]}")
    await register_user(
        request.event,
        request.data,
        pool=pool,
        hasher=hasher,
        private_key=private_key,
        token_key=token_key,
        token_ttl=dt.timedelta(hours=1),
    )
    event, data = await email_requested_to(pool, email)

    await send_with(smtp, pool=pool, token_key=token_key, settings=settings)(event, data)

    message = await mailbox.wait_for(addressed_to(email), timeout=5)
    prefix = ACTIVATION_URL.split("{")[0]
    token = next(
        line.strip()[len(prefix) :]
        for line in text_of(message).splitlines()
        if line.strip().startswith(prefix)
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM activation_tokens t JOIN users u ON u.id = t.user_id "
            "WHERE t.token_hash = $1 AND u.email = $2",
            tokens.hash_secret(token),
            email,
        )
        == 1
    )


async def test_the_mail_is_rendered_in_the_tenant_default_locale_when_the_reader_has_none_shipped(
    pool: asyncpg.Pool, settings: Settings, token_key: bytes, make_tenant: MakeTenant, mailbox, smtp
) -> None:
    german_tenant = await make_tenant(default_locale="de")
    data = await requested_email(pool, german_tenant, locale="it_IT")

    await send_with(smtp, pool=pool, token_key=token_key, settings=settings)(*command_of(data))

    message = await mailbox.wait_for(addressed_to(data.to), timeout=5)
    assert message["Subject"] == "Aktivieren Sie Ihr Konto"
    assert message["Content-Language"] == "de"
    assert f"Hallo {data.user_name}," in text_of(message)


async def test_the_recovery_email_carries_the_token_of_the_workers_recovery_key(
    pool: asyncpg.Pool,
    settings: Settings,
    token_key: bytes,
    private_key: str,
    tenant: Tenant,
    mailbox,
    smtp,
) -> None:
    """A password_recovery row as the life-cycle worker writes it: the mailed link is the
    recover URL with the token derived under the key cli/workers.py gives the mailer."""
    recover_url = "https://app.example/recover?token={passwordRecoveryToken}"
    data = await requested_email(
        pool,
        tenant,
        kind="password_recovery",
        locale="fr_FR",
        recover_url=recover_url,
        recovery_token_id=uuid.uuid4(),
    )

    await send_with(smtp, pool=pool, token_key=token_key, settings=settings)(*command_of(data))

    message = await mailbox.wait_for(addressed_to(data.to), timeout=5)
    token = tokens.derive_token(
        derive_secret(private_key, "recovery-token"), data.recovery_token_id
    )
    assert recover_url.replace("{passwordRecoveryToken}", token) in text_of(message)
    assert tokens.derive_token(token_key, data.recovery_token_id) not in message.as_string()
    assert message["Subject"] == "Réinitialisez votre mot de passe"
    minutes = settings.recovery_ttl_s // 60
    assert f"valable {minutes} minutes" in text_of(message)
    assert await pool.fetchval("SELECT status FROM emails WHERE id = $1", data.email_id) == "sent"


async def test_an_email_for_a_tenant_that_no_longer_exists_is_a_permanent_error(
    pool: asyncpg.Pool, settings: Settings, token_key: bytes, tenant: Tenant, mailbox, smtp
) -> None:
    data = (await requested_email(pool, tenant)).model_copy(update={"tenant_id": uuid.uuid4()})

    with pytest.raises(PermanentError):
        await send_with(smtp, pool=pool, token_key=token_key, settings=settings)(*command_of(data))

    await asyncio.sleep(0.3)
    assert mailbox.received(addressed_to(data.to)) == []
    assert await delivered_events(pool, data.email_id) == []


async def test_the_invitation_email_links_to_the_hosted_page_with_the_stored_token(
    pool: asyncpg.Pool,
    settings: Settings,
    token_key: bytes,
    private_key: str,
    make_tenant: MakeTenant,
    mailbox,
    smtp,
) -> None:
    """Invitation worker -> outbox row -> mailer: the mailed link finds the invitation."""
    tenant = await make_tenant(default_locale="de")
    email = f"invitee-{uuid.uuid4().hex[:10]}@example.com"
    invite = InviteRequested(
        request_id=uuid.uuid4(), tenant_id=tenant.id, email=email, locale="de_AT", name="Bob"
    )
    await invite_user(
        envelope(invite),
        invite,
        pool=pool,
        token_key=derive_secret(private_key, "invitation-token"),
        ttl=dt.timedelta(days=7),
    )
    event, data = await email_requested_to(pool, email)

    await send_with(smtp, pool=pool, token_key=token_key, settings=settings)(event, data)

    message = await mailbox.wait_for(addressed_to(email), timeout=5)
    assert message["Subject"] == f"Sie sind eingeladen, {tenant.name} beizutreten"
    assert message["Content-Language"] == "de"
    prefix = f"{settings.public_url.rstrip('/')}/invitations/"
    [token] = [
        line.strip()[len(prefix) :]
        for line in text_of(message).splitlines()
        if line.strip().startswith(prefix)
    ]
    found = await invitations.find_by_token(pool, token)
    assert found is not None
    assert (found.email, found.organization, found.status) == (email, tenant.name, "pending")
    assert await pool.fetchval("SELECT status FROM emails WHERE id = $1", data.email_id) == "sent"


async def email_requested_to(pool: asyncpg.Pool, email: str):
    """The email.requested command a worker wrote to the outbox for `email`, parsed (the
    command names only the emails row, which holds the address)."""
    body = await pool.fetchval(
        "SELECT o.body::text FROM outbox o JOIN emails e "
        "ON e.id = (o.body->'data'->>'emailId')::uuid "
        "WHERE o.routing_key = 'email.requested' AND e.recipient = $1",
        email,
    )
    return parse("email.requested", body.encode())
