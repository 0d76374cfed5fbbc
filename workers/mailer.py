"""The mailer worker: renders the emails other workers ask for, in the recipient's
language, and sends them."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import aiosmtplib
import asyncpg
from babel.dates import format_datetime

from schemas.events import CloudEvent, EmailDelivered, EmailFailed, EmailRequested
from service import i18n, metrics, tokens
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
    """The tenant side of an email: whose name it carries, whose default locale applies,
    and the sender address it uses (None: the installation's default)."""

    organization: str
    default_locale: str
    mail_from: str | None = None


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
        return common | {
            "name": data.name,
            "invitation_link": invitation_link(data, settings.invitation_key, settings.public_url),
            "expires": _long_date(data.expires_at, locale),
        }
    if data.kind == "duplicate":
        return common | {"user_name": data.user_name}
    if data.kind == "welcome":
        return common | {
            "name": data.name or data.to,
            "email": data.to,
            "created": _long_date(data.user_created_at, locale),
        }
    raise PermanentError(f"unknown email kind {data.kind!r}")


def _long_date(moment: dt.datetime | None, locale: str) -> str:
    """A date and time as people of `locale` write it (UTC, named as such)."""
    if moment is None:
        return ""
    return format_datetime(moment, "long", tzinfo=dt.UTC, locale=locale)


def render(data: EmailRequested, *, recipient: Recipient, settings: MailSettings) -> EmailMessage:
    """The complete message in the best available locale: text and HTML parts."""
    chain = i18n.fallback_chain(data.locale, default=recipient.default_locale)
    env = i18n.environment("workers", chain)
    context = context_for(data, recipient, settings, chain[0])
    message = EmailMessage()
    message["Subject"] = env.get_template(f"{data.kind}.subject.txt").render(context).strip()
    message["From"] = recipient.mail_from or settings.mail_from
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
        "SELECT name, default_locale, mail_from FROM tenants WHERE id = $1", data.tenant_id
    )
    if row is None:
        raise PermanentError("the tenant no longer exists")
    return Recipient(
        organization=row["name"], default_locale=row["default_locale"], mail_from=row["mail_from"]
    )


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
        await pool.execute(
            "UPDATE emails SET attempts = attempts + 1, error = $2 WHERE id = $1",
            data.email_id,
            describe(exc),
        )
        if is_permanent(exc):
            raise PermanentError(f"SMTP refused: {describe(exc)}") from exc
        raise RetryableError(f"SMTP: {describe(exc)}") from exc
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
    metrics.EMAILS_SENT.labels(data.kind).inc()
    log.info("email sent", extra={"email_id": str(data.email_id), "kind": data.kind})


def is_permanent(exc: BaseException) -> bool:
    """A 5xx reply: the server will refuse this message however often we try."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= r.code < 600 for r in exc.recipients)
    code = getattr(exc, "code", None)
    return isinstance(code, int) and 500 <= code < 600


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


async def record_failure(
    event: CloudEvent, data: EmailRequested, *, pool: asyncpg.Pool, error: str
) -> None:
    """The email is given up on (refused, or retries exhausted): mark it and publish
    email.failed. Called by the runner just before the message is dead-lettered."""
    async with pool.acquire() as conn, conn.transaction():
        attempts = await conn.fetchval(
            "UPDATE emails SET status = 'failed', error = coalesce(error, $2) "
            "WHERE id = $1 AND status <> 'sent' RETURNING attempts",
            data.email_id,
            error[:500],
        )
        if attempts is None:
            return
        await add_event(
            conn,
            EmailFailed(
                email_id=data.email_id,
                tenant_id=data.tenant_id,
                kind=data.kind,
                to=data.to,
                attempts=attempts,
                error=error[:500],
            ),
            subject=str(data.email_id),
        )
    metrics.EMAILS_FAILED.labels(data.kind).inc()
    log.warning("email failed", extra={"email_id": str(data.email_id), "kind": data.kind})
