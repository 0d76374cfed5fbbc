"""The mailer worker: renders the emails other workers ask for, in the recipient's
language, and sends them.

Everything it sends comes from its own `emails` row (service/emails.py), looked up by the
command's (emailId, tenantId): the command names an email, it does not describe one."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

import aiosmtplib
import asyncpg
from babel.dates import format_datetime

from schemas.events import CloudEvent, EmailDelivered, EmailFailed, EmailRequested
from service import i18n, metrics, tokens
from service.emails import EmailContent, content_of
from service.errors import PermanentError, RetryableError
from service.outbox import add_event, outbox_row
from service.supervisor import retry_transient

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class MailSettings:
    """What the mailer needs besides the message: keys to re-derive tokens, and links."""

    activation_key: bytes
    invitation_key: bytes
    recovery_key: bytes  # no default: tokens under an empty HMAC key could be guessed
    mail_from: str
    public_url: str
    activation_valid_hours: int
    recovery_valid_minutes: int
    # How long a claim on an email keeps other copies from sending it.
    lease_s: float = 120.0


@dataclass(frozen=True)
class Recipient:
    """The tenant side of an email: whose name it carries, whose default locale applies,
    and the sender address it uses (None: the installation's default)."""

    organization: str
    default_locale: str
    mail_from: str | None = None


def _client_link(
    url: str | None, placeholder: str, key: bytes, token_id: uuid.UUID | None, kind: str
) -> str:
    """A tenant client's URL with its placeholder replaced by the token of `token_id`
    under `key` (re-derived here, never transported)."""
    if url is None or token_id is None:
        raise PermanentError(f"{kind} email without {kind} URL or token id")
    return url.replace(placeholder, tokens.derive_token(key, token_id))


def activation_link(data: EmailContent, key: bytes) -> str:
    """The tenant's activation URL with the activation token."""
    return _client_link(
        data.activation_url, "{activationToken}", key, data.activation_token_id, "activation"
    )


def recovery_link(data: EmailContent, key: bytes) -> str:
    """The tenant's recover URL with the password recovery token (the recovery key's)."""
    return _client_link(
        data.recover_url, "{passwordRecoveryToken}", key, data.recovery_token_id, "recovery"
    )


def invitation_link(data: EmailContent, key: bytes, public_url: str) -> str:
    """The hosted accept page for this invitation (token re-derived here)."""
    if data.invitation_id is None:
        raise PermanentError("invitation email without invitation id")
    token = tokens.derive_token(key, data.invitation_id)
    return f"{public_url.rstrip('/')}/invitations/{token}"


# Kinds about one moment: the EmailContent field, which is also the template variable
# (the date as the locale writes it).
DATED = {"password_changed": "changed_at", "locked_out": "locked_until"}


def context_for(
    data: EmailContent, recipient: Recipient, settings: MailSettings, locale: str
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
    if data.kind == "password_recovery":
        return common | {
            "user_name": data.user_name,
            "recovery_link": recovery_link(data, settings.recovery_key),
            "valid_minutes": settings.recovery_valid_minutes,
        }
    if data.kind in DATED:
        field = DATED[data.kind]
        return common | {
            "user_name": data.user_name,
            field: _long_date(_required(data, field), locale),
        }
    if data.kind in ("duplicate", "username_taken", "account_deleted"):
        return common | {"user_name": data.user_name}
    if data.kind == "welcome":
        return common | {
            "name": data.name or data.to,
            "email": data.to,
            "created": _long_date(data.user_created_at, locale),
        }
    raise PermanentError(f"unknown email kind {data.kind!r}")


def _required(data: EmailContent, field: str) -> Any:
    """A field the kind cannot be written without (PermanentError when it is missing)."""
    value = getattr(data, field)
    if value is None:
        raise PermanentError(f"{data.kind} email without {field}")
    return value


def _long_date(moment: dt.datetime | None, locale: str) -> str:
    """A date and time as people of `locale` write it (UTC, named as such)."""
    if moment is None:
        return ""
    return format_datetime(moment, "long", tzinfo=dt.UTC, locale=locale)


class _FoldedOnce(BaseHeader):
    """A header that keeps its last folding: a header shared by many messages (see
    _HeaderClasses) is folded the same way for each of them (aiosmtplib flattens with
    the module-level email.policy.SMTP), so it need not be refolded every time."""

    def fold(self, *, policy) -> str:
        memo = self.__dict__.get("_folded")
        if memo is not None and memo[0] is policy:
            return memo[1]
        folded = super().fold(policy=policy)
        self._folded = (policy, folded)  # the policy is kept, so its id is never reused
        return folded


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, with each header class built once per name (the
    stdlib's builds a new class with type() on every lookup, several times for each header
    set: a third of the CPU time of rendering an email), and the parsed headers whose
    values repeat from email to email (From, Content-Type: text/plain, Auto-Submitted...)
    parsed once. Header objects are immutable: a message changing a header stores a new
    one."""

    REPEATING = frozenset(
        {
            "from",
            "subject",
            "auto-submitted",
            "content-language",
            "content-type",
            "content-transfer-encoding",
            "mime-version",
        }
    )

    def __init__(self) -> None:
        super().__init__(base_class=_FoldedOnce)
        self._built: dict[str, type] = {}
        self._parsed: OrderedDict[tuple[str, str], object] = OrderedDict()

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built

    def __call__(self, name: str, value: str):
        if (
            name.lower() not in self.REPEATING
            or not isinstance(value, str)
            or "boundary=" in value  # a multipart's own, set when it is flattened
        ):
            return super().__call__(name, value)
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            header = self._parsed[key] = super().__call__(name, value)
            if len(self._parsed) > 512:
                self._parsed.popitem(last=False)
        return header


# email.policy.default (what EmailMessage() uses), with the registry above.
POLICY = email_policy.default.clone(header_factory=_HeaderClasses())


def render(data: EmailContent, *, recipient: Recipient, settings: MailSettings) -> EmailMessage:
    """The complete message in the best available locale: text and HTML parts."""
    chain = i18n.fallback_chain(data.locale, default=recipient.default_locale)
    env = i18n.environment("workers", chain)
    context = context_for(data, recipient, settings, chain[0])
    message = EmailMessage(policy=POLICY)
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


def recipient_of(row: asyncpg.Record) -> Recipient:
    """The Recipient of a claimed row (joined with its tenant; PermanentError without)."""
    if row["organization"] is None:
        raise PermanentError("the tenant no longer exists")
    return Recipient(
        organization=row["organization"],
        default_locale=row["default_locale"],
        mail_from=row["mail_from"],
    )


async def send_email(
    event: CloudEvent,
    data: EmailRequested,
    *,
    pool: asyncpg.Pool,
    sender: Sender,
    settings: MailSettings,
) -> None:
    """Send once per emailId, however often and however concurrently the request is
    delivered; record the delivery and publish email.delivered.

    The row is claimed (committed) before the SMTP conversation, so a second copy finds
    the claim and does not send. A claim is released when sending failed for sure; it is
    kept when the handler is cancelled mid-conversation (the server may have the message),
    and then expires with its lease.

    Recipient and content come from the row, never from the command (see module
    docstring), so a forged or replayed command cannot address anyone new."""
    claimed = await claim(pool, data, lease_s=settings.lease_s)
    if claimed is None:
        return  # sent already: a redelivered or replayed copy
    content, row = claimed
    try:
        recipient = recipient_of(row)
        message = render(content, recipient=recipient, settings=settings)
        await sender.send(message)
    except Exception as exc:
        await release(pool, data.email_id, describe(exc))
        if not isinstance(exc, SMTP_FAILURES):
            raise
        if is_permanent(exc):
            raise PermanentError(f"SMTP refused: {describe(exc)}") from exc
        raise RetryableError(f"SMTP: {describe(exc)}") from exc
    # The server has the message: losing this commit to a brief database outage would
    # send it again once the lease expires, so keep trying for part of the lease.
    await retry_transient(
        lambda: record_sent(pool, content),
        what="recording a sent email",
        deadline_s=settings.lease_s / 2,
    )
    metrics.EMAILS_SENT.labels(content.kind).inc()
    log.info("email sent", extra={"email_id": str(content.email_id), "kind": content.kind})


# One statement, so one round trip and its own transaction: lock the row, take it unless it
# was sent or another copy holds a live lease, and read what to send with its tenant. The
# CTE `old` is the row as locked (after waiting for a concurrent claimer to commit, it is
# that claimer's version), so the decision is the one SELECT ... FOR UPDATE then UPDATE
# made in a transaction of their own.
CLAIM = """
WITH old AS (
    SELECT id, tenant_id, kind, recipient, locale, params, status,
           coalesce(lease_until < now(), true) AS expired
      FROM emails WHERE id = $1 AND tenant_id = $2 FOR UPDATE
), claimed AS (
    UPDATE emails AS e
       SET status = 'sending', attempts = e.attempts + 1,
           lease_until = now() + make_interval(secs => $3)
      FROM old
     WHERE e.id = old.id AND old.status <> 'sent' AND (old.status <> 'sending' OR old.expired)
    RETURNING e.id
)
SELECT old.*, claimed.id IS NOT NULL AS claimed,
       t.name AS organization, t.default_locale, t.mail_from
  FROM old
  LEFT JOIN claimed ON true
  LEFT JOIN tenants AS t ON t.id = old.tenant_id
"""


async def claim(
    pool: asyncpg.Pool, data: EmailRequested, *, lease_s: float
) -> tuple[EmailContent, asyncpg.Record] | None:
    """Take the row for one sending attempt (counted in `attempts`) and return what it
    says to send, with the row (its tenant's name, default locale and sender address in
    `organization`, `default_locale`, `mail_from`: see `recipient_of`); None if it was
    sent. The row must belong to the command's tenant.

    Raises RetryableError while another copy holds a live lease: it may be mid-send, and
    after its lease the retry can take over. Taking over an expired lease is counted and
    logged: if its holder died between the server's 250 and its commit, this sends the
    email a second time (the one duplicate window left)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(CLAIM, data.email_id, data.tenant_id, lease_s)
    if row is None:
        raise PermanentError("the email row does not exist")
    if row["status"] == "sent":
        return None
    if not row["claimed"]:
        raise RetryableError("email is being sent by another copy")
    # 'failed' is claimable too: a copy replayed from the dead-letter queue is a request
    # to try again.
    content = content_of(row)
    if row["status"] == "sending":
        metrics.EMAIL_LEASE_TAKEOVERS.labels(content.kind).inc()
        log.warning(
            "took over an expired email lease; its holder may have sent it already",
            extra={"email_id": str(content.email_id), "kind": content.kind},
        )
    return content, row


async def release(pool: asyncpg.Pool, email_id: uuid.UUID, error: str) -> None:
    """Give the claim back after an attempt that surely did not send, so that the next
    copy need not wait for the lease. If this fails, the lease expires by itself."""
    try:
        await pool.execute(
            "UPDATE emails SET status = 'pending', lease_until = NULL, error = $2 "
            "WHERE id = $1 AND status = 'sending'",
            email_id,
            error,
        )
    except Exception:
        log.warning("could not release an email claim", exc_info=True)


# Mark the email sent and add email.delivered with the attempts the row counted, in one
# statement (its own transaction); nothing when a copy that took over our expired lease
# recorded it first.
RECORD_SENT = """
WITH sent AS (
    UPDATE emails SET status = 'sent', sent_at = now(), lease_until = NULL
     WHERE id = $1 AND status <> 'sent' RETURNING attempts
)
INSERT INTO outbox (event_id, routing_key, body)
SELECT $2, $3, jsonb_set($4::jsonb, '{data,attempts}', to_jsonb(sent.attempts)) FROM sent
"""


async def record_sent(pool: asyncpg.Pool, data: EmailContent) -> None:
    """Mark the email sent and add email.delivered, in one transaction."""
    event = EmailDelivered(
        email_id=data.email_id,
        tenant_id=data.tenant_id,
        kind=data.kind,
        to=data.to,
        attempts=0,  # the row's count replaces it
    )
    async with pool.acquire() as conn:
        await conn.execute(
            RECORD_SENT, data.email_id, *outbox_row(event, subject=str(data.email_id))
        )


# What a failed SMTP conversation raises; anything else is not the server's answer.
SMTP_FAILURES = (aiosmtplib.SMTPException, OSError, TimeoutError)
# Refusals of this recipient or this content: asking again gets the same answer. Other
# 5xx replies (500-504 syntax, 503 bad sequence, 530/535 auth) mean our connection or
# configuration was off, which a later attempt on a fresh connection may not be.
PERMANENT_CODES = range(550, 560)
REFUSALS = (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError)


def is_permanent(exc: BaseException) -> bool:
    """A definite 55x refusal of the recipient(s), the sender or the content."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code in PERMANENT_CODES for r in exc.recipients)
    return isinstance(exc, REFUSALS) and exc.code in PERMANENT_CODES


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


async def record_failure(
    event: CloudEvent, data: EmailRequested, *, pool: asyncpg.Pool, error: str
) -> None:
    """The email is given up on (refused, or retries exhausted): mark it and publish
    email.failed. Called by the runner just before the message is dead-lettered.

    Never for an email that was sent, nor one another copy holds a live claim on (this
    copy gave up waiting for it; that copy will record its own outcome)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE emails SET status = 'failed', lease_until = NULL, "
            "error = coalesce(error, $2) "
            "WHERE id = $1 AND tenant_id = $3 AND status <> 'sent' "
            "AND NOT (status = 'sending' AND coalesce(lease_until > now(), false)) "
            "RETURNING attempts, kind, recipient",
            data.email_id,
            error[:500],
            data.tenant_id,
        )
        if row is None:
            return
        await add_event(
            conn,
            EmailFailed(
                email_id=data.email_id,
                tenant_id=data.tenant_id,
                kind=row["kind"],
                to=row["recipient"],
                attempts=row["attempts"],
                error=error[:500],
            ),
            subject=str(data.email_id),
        )
    metrics.EMAILS_FAILED.labels(row["kind"]).inc()
    log.warning("email failed", extra={"email_id": str(data.email_id), "kind": row["kind"]})
