"""Asking the mailer for an email, inside the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from schemas.events import EmailRequested
from service.outbox import add_event


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
    email_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO emails (id, tenant_id, kind, recipient) VALUES ($1, $2, $3, $4)",
        email_id,
        tenant_id,
        kind,
        to,
    )
    await add_event(
        conn,
        EmailRequested(
            email_id=email_id, tenant_id=tenant_id, kind=kind, to=to, locale=locale, **fields
        ),
    )
    return email_id
