"""The mailer worker: renders the emails other workers ask for, in the recipient's
language, and sends them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import aiosmtplib
import asyncpg
from babel.dates import format_datetime

from schemas.events import CloudEvent, EmailDelivered, EmailRequested
from service import i18n, tokens
from service.errors import PermanentError, RetryableError
from service.outbox import add_event

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class MailSettings:
    """What the mailer needs besides the message: keys to re-derive tokens, and links."""

    activation_key: bytes
    invitation_key: bytes
    mail_from: str
    public_url: str
    activation_valid_hours: int


@dataclass(frozen=True)
class Recipient:
    """The tenant side of an email: whose name it carries, whose default locale applies."""

    organization: str
    default_locale: str


def activation_link(data: EmailRequested, key: bytes) -> str:
    """The tenant's activation URL with the token (re-derived here, never transported)."""
    if data.activation_url is None or data.activation_token_id is None:
        raise PermanentError("activation email without activation URL or token id")
    token = tokens.derive_token(key, data.activation_token_id)
    return data.activation_url.replace("{activationToken}", token)


def invitation_link(data: EmailRequested, key: bytes, public_url: str) -> str:
    """The hosted accept page for this invitation (token re-derived here)."""
    if data.invitation_id is None:
        raise PermanentError("invitation email without invitation id")
    token = tokens.derive_token(key, data.invitation_id)
    return f"{public_url.rstrip('/')}/invitations/{token}"


def context_for(
    data: EmailRequested, recipient: Recipient, settings: MailSettings, locale: str
) -> dict[str, Any]:
    """The template variables of one email kind."""
    common = {"lang": locale.replace("_", "-"), "organization": recipient.organization}
    if data.kind == "activation":
        return common | {
            "user_name": data.user_name,
            "activation_link": activation_link(data, settings.activation_key),
            "valid_hours": settings.activation_valid_hours,
        }
    if data.kind == "invitation":
        expires = data.expires_at
        return common | {
            "name": data.name,
            "invitation_link": invitation_link(data, settings.invitation_key, settings.public_url),
            "expires": format_datetime(expires, "long", locale=locale) if expires else "",
        }
    raise PermanentError(f"unknown email kind {data.kind!r}")


def render(data: EmailRequested, *, recipient: Recipient, settings: MailSettings) -> EmailMessage:
    """The complete message in the best available locale: text and HTML parts."""
    chain = i18n.fallback_chain(data.locale, default=recipient.default_locale)
    env = i18n.environment("workers", chain)
    context = context_for(data, recipient, settings, chain[0])
    message = EmailMessage()
    message["Subject"] = env.get_template(f"{data.kind}.subject.txt").render(context).strip()
    message["From"] = settings.mail_from
    message["To"] = data.to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(idstring=str(data.email_id), domain="registrar")
    message["Auto-Submitted"] = "auto-generated"
    message["X-Registrar-Email-Id"] = str(data.email_id)
    message.set_content(env.get_template(f"{data.kind}.txt").render(context))
    message.add_alternative(env.get_template(f"{data.kind}.html").render(context), subtype="html")
    message["Content-Language"] = chain[0]  # after set_content, which resets Content-*
    return message


async def load_recipient(pool: asyncpg.Pool, data: EmailRequested) -> Recipient:
    row = await pool.fetchrow(
        "SELECT name, default_locale FROM tenants WHERE id = $1", data.tenant_id
    )
    if row is None:
        raise PermanentError("the tenant no longer exists")
    return Recipient(organization=row["name"], default_locale=row["default_locale"])


async def send_email(
    event: CloudEvent,
    data: EmailRequested,
    *,
    pool: asyncpg.Pool,
    sender: Sender,
    settings: MailSettings,
) -> None:
    """Send once per emailId; record delivery and publish email.delivered."""
    status = await pool.fetchval("SELECT status FROM emails WHERE id = $1", data.email_id)
    if status == "sent":
        return  # redelivered after a successful send
    message = render(data, recipient=await load_recipient(pool, data), settings=settings)
    try:
        await sender.send(message)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        await pool.execute("UPDATE emails SET attempts = attempts + 1 WHERE id = $1", data.email_id)
        raise RetryableError(f"SMTP: {exc}") from exc
    async with pool.acquire() as conn, conn.transaction():
        attempts = await conn.fetchval(
            "UPDATE emails SET status = 'sent', attempts = attempts + 1, sent_at = now() "
            "WHERE id = $1 RETURNING attempts",
            data.email_id,
        )
        await add_event(
            conn,
            EmailDelivered(
                email_id=data.email_id,
                tenant_id=data.tenant_id,
                kind=data.kind,
                to=data.to,
                attempts=attempts or 1,
            ),
            subject=str(data.email_id),
        )
    log.info("email sent", extra={"email_id": str(data.email_id), "kind": data.kind})
