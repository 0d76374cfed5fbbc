"""The mailer worker: renders and sends the emails other workers ask for."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiosmtplib
import asyncpg
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from schemas.events import CloudEvent, EmailDelivered, EmailRequested
from service import tokens
from service.errors import PermanentError, RetryableError
from service.outbox import add_event

log = logging.getLogger(__name__)
SUBJECTS = {"activation": "Activate your account"}

templates = Environment(
    loader=PackageLoader("workers", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,  # a template with a missing variable fails loudly
)


class Sender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def activation_link(data: EmailRequested, token_key: bytes) -> str:
    """The tenant's activation URL with the token (re-derived here, never transported)."""
    if data.activation_url is None or data.activation_token_id is None:
        raise PermanentError("activation email without activation URL or token id")
    token = tokens.derive_token(token_key, data.activation_token_id)
    return data.activation_url.replace("{activationToken}", token)


def render(data: EmailRequested, *, sender: str, link: str, valid_hours: int) -> EmailMessage:
    """The complete message: text and HTML parts, headers for automated mail."""
    context = {"user_name": data.user_name, "activation_link": link, "valid_hours": valid_hours}
    message = EmailMessage()
    message["Subject"] = SUBJECTS[data.kind]
    message["From"] = sender
    message["To"] = data.to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(idstring=str(data.email_id), domain="registrar")
    message["Auto-Submitted"] = "auto-generated"
    message["X-Registrar-Email-Id"] = str(data.email_id)
    message.set_content(templates.get_template(f"{data.kind}.txt").render(context))
    message.add_alternative(
        templates.get_template(f"{data.kind}.html").render(context), subtype="html"
    )
    # After set_content, which resets Content-* headers. The wording is English-only until
    # the translated catalogue lands, so say so rather than claim the user's locale.
    message["Content-Language"] = "en"
    return message


async def send_email(
    event: CloudEvent,
    data: EmailRequested,
    *,
    pool: asyncpg.Pool,
    sender: Sender,
    token_key: bytes,
    mail_from: str,
    valid_hours: int,
) -> None:
    """Send once per emailId; record delivery and publish email.delivered."""
    status = await pool.fetchval("SELECT status FROM emails WHERE id = $1", data.email_id)
    if status == "sent":
        return  # redelivered after a successful send
    message = render(
        data, sender=mail_from, link=activation_link(data, token_key), valid_hours=valid_hours
    )
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
