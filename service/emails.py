"""Emails as rows: what a worker (or the gateway) asks the mailer to send, and what the mailer
reads back.

The `emails` row is the whole request: recipient, kind, locale and the render
parameters, written in the producing worker's transaction. The `email.requested` command
only names the row (emailId, tenantId), so whoever can publish a command cannot choose a
recipient or content: a forged or replayed command can at most (re)send a legitimate
email to its legitimate recipient, and one already sent is not sent again.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from schemas.events import EmailRequested
from schemas.ids import uuid7
from service.outbox import add_event

# Row columns of their own; every other field of EmailContent lives in `params`.
COLUMNS = frozenset({"email_id", "tenant_id", "kind", "to", "locale"})


class EmailContent(BaseModel):
    """One email as the mailer renders it. Fields a kind does not use stay at their
    defaults; fields a newer kind adds are kept too (extra="allow") and reach `params`."""

    model_config = ConfigDict(frozen=True, extra="allow")

    email_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    to: str
    locale: str = ""
    user_name: str = ""
    name: str | None = None
    activation_url: str | None = None
    activation_token_id: uuid.UUID | None = None
    invitation_id: uuid.UUID | None = None
    expires_at: dt.datetime | None = None
    user_created_at: dt.datetime | None = None
    # password_recovery: the tenant's recover URL (with {passwordRecoveryToken}) and the
    # token's row id, from which the mailer re-derives the token.
    recover_url: str | None = None
    recovery_token_id: uuid.UUID | None = None
    # password_changed: when; locked_out: until when.
    changed_at: dt.datetime | None = None
    locked_until: dt.datetime | None = None

    def command(self) -> EmailRequested:
        """The `email.requested` command naming this email (ids only)."""
        return EmailRequested(email_id=self.email_id, tenant_id=self.tenant_id)


INSERT = (
    "INSERT INTO emails (id, tenant_id, kind, recipient, locale, params) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)


def email_row(content: EmailContent) -> tuple:
    """The values of INSERT's six parameters for `content` (for callers that write the
    row as part of a larger statement)."""
    return (
        content.email_id,
        content.tenant_id,
        content.kind,
        content.to,
        content.locale,
        content.model_dump(mode="json", exclude=set(COLUMNS), exclude_none=True),
    )


async def store_email(conn: asyncpg.Connection, content: EmailContent) -> None:
    """Insert the row the mailer will render `content` from."""
    await conn.execute(INSERT, *email_row(content))


async def request_email(
    conn: asyncpg.Connection,
    *,
    tenant_id: uuid.UUID,
    kind: str,
    to: str,
    locale: str,
    **fields: Any,
) -> uuid.UUID:
    """Record the email and its `email.requested` command; both commit with the caller."""
    content = EmailContent(
        email_id=uuid7(), tenant_id=tenant_id, kind=kind, to=to, locale=locale, **fields
    )
    await store_email(conn, content)
    await add_event(conn, content.command())
    return content.email_id


def content_of(row: asyncpg.Record) -> EmailContent:
    """The EmailContent of an `emails` row (selected with id, tenant_id, kind, recipient,
    locale, params)."""
    return EmailContent(
        **(row["params"] or {}),
        email_id=row["id"],
        tenant_id=row["tenant_id"],
        kind=row["kind"],
        to=row["recipient"],
        locale=row["locale"] or "",
    )
