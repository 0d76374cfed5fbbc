"""Registration requests as the gateway sees them: created pending, decided by a worker."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg

Status = Literal["pending", "registered", "rejected", "failed"]


@dataclass(frozen=True)
class RequestRecord:
    id: uuid.UUID
    status: Status
    body_fingerprint: bytes
    user_id: uuid.UUID | None
    reason: str | None
    email: str | None = None
    user_name: str | None = None
    locale: str | None = None
    shadow_user_id: uuid.UUID | None = None
    decided_at: dt.datetime | None = None
    by_admin: bool = False  # POST /{apiKey}/users (the request carries what the admin chose)


def _record(row: asyncpg.Record | None) -> RequestRecord | None:
    if row is None:
        return None
    return RequestRecord(
        id=row["id"],
        status=row["status"],
        body_fingerprint=bytes(row["body_fingerprint"]),
        user_id=row["user_id"],
        reason=row["reason"],
        email=row["email"],
        user_name=row["user_name"],
        locale=row["locale"],
        shadow_user_id=row["shadow_user_id"],
        decided_at=row["decided_at"],
        by_admin=row["admin"] is not None,
    )


async def find_by_idempotency_key(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: uuid.UUID, key: str
) -> RequestRecord | None:
    row = await conn.fetchrow(
        "SELECT * FROM registration_requests WHERE tenant_id = $1 AND idempotency_key = $2",
        tenant_id,
        key,
    )
    return _record(row)


async def get_request(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: uuid.UUID, request_id: uuid.UUID
) -> RequestRecord | None:
    row = await conn.fetchrow(
        "SELECT * FROM registration_requests WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        request_id,
    )
    return _record(row)


async def insert_request(
    conn: asyncpg.Connection,
    *,
    request_id: uuid.UUID,
    tenant_id: uuid.UUID,
    idempotency_key: str | None,
    fingerprint: bytes,
    email: str,
    user_name: str,
    locale: str,
) -> bool:
    """Insert a pending request; False when the idempotency key was taken meanwhile."""
    inserted = await conn.fetchval(
        """
        INSERT INTO registration_requests
               (id, tenant_id, idempotency_key, body_fingerprint, email, user_name, locale)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
        RETURNING true
        """,
        request_id,
        tenant_id,
        idempotency_key,
        fingerprint,
        email,
        user_name,
        locale,
    )
    return bool(inserted)


async def delete_pending(conn: asyncpg.Connection | asyncpg.Pool, request_id: uuid.UUID) -> None:
    """Undo a request whose event the broker refused, so a retry starts clean."""
    await conn.execute(
        "DELETE FROM registration_requests WHERE id = $1 AND status = 'pending'", request_id
    )
