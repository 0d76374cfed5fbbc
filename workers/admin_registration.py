"""Users an administrator creates (POST /{apiKey}/users, SPEC §11), carried out by the
registration worker like any registration (workers.registration): the same command,
the same request row, the same uniqueness and outcome. What the administrator decided
beyond the form (name, roles, approval, whether to mail) comes from the request row,
where the gateway recorded it after checking the tenant token, never from the command.

Mail: with `sendEmailNotification`, a user who is not approved gets an activation link
(to the activationUrl given), one who is approved a welcome note; without it, nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from schemas.events import RegisterRequested, UserRegistered
from schemas.ids import uuid7
from service.emails import request_email
from service.outbox import add_event
from service.outcomes import announce
from workers.activation import issue_activation_token

# The user and the roles chosen (those of the tenant still there); no row when the email
# or userName is taken (as in workers.registration.INSERT_USER).
INSERT_USER = """
WITH u AS (
    INSERT INTO users (id, tenant_id, user_name, email, password_hash, locale, source, name,
                       is_approved)
    VALUES ($1, $2, $3, $4, $5, $6, 'admin', $7, $8)
    ON CONFLICT DO NOTHING
    RETURNING id, created_at
), r AS (
    INSERT INTO user_roles (user_id, role_id)
    SELECT u.id, roles.id FROM u, roles WHERE roles.tenant_id = $2 AND roles.id = ANY($9::uuid[])
    RETURNING role_id
)
SELECT u.id, u.created_at,
       ARRAY(SELECT ro.name FROM r JOIN roles ro ON ro.id = r.role_id ORDER BY ro.name) AS roles
  FROM u
"""


async def insert_user(
    conn: asyncpg.Connection, data: RegisterRequested, admin: dict, password_hash: str
) -> asyncpg.Record | None:
    """The new user (id, created_at, role names), or None when the email or userName is
    taken."""
    return await conn.fetchrow(
        INSERT_USER,
        uuid7(),
        data.tenant_id,
        data.user_name,
        data.email,
        password_hash,
        data.locale,
        admin["name"],
        admin["isApproved"],
        [uuid.UUID(r) for r in admin["roles"]],
    )


async def decide(
    conn: asyncpg.Connection,
    data: RegisterRequested,
    admin: dict,
    user: asyncpg.Record,
    *,
    token_key: bytes,
    token_ttl: dt.timedelta,
) -> None:
    """The request is registered, `user.registered` (source admin) published, the mail
    asked for requested, and the waiting gateway woken on commit."""
    await conn.execute(
        "UPDATE registration_requests SET status = 'registered', user_id = $1, "
        "decided_at = now() WHERE id = $2",
        user["id"],
        data.request_id,
    )
    await add_event(
        conn,
        UserRegistered(
            user_id=user["id"],
            tenant_id=data.tenant_id,
            email=data.email,
            user_name=data.user_name,
            name=admin["name"],
            locale=data.locale,
            is_approved=admin["isApproved"],
            roles=list(user["roles"]),
            source="admin",
            registered_at=user["created_at"],
            request_id=data.request_id,
        ),
        subject=str(user["id"]),
    )
    if admin["notify"] and admin["isApproved"]:
        await request_email(
            conn,
            tenant_id=data.tenant_id,
            kind="welcome",
            to=data.email,
            locale=data.locale,
            name=admin["name"] or data.user_name,
            user_created_at=user["created_at"],
        )
    elif admin["notify"] and data.activation_url:
        recipient = {
            "id": user["id"],
            "tenant_id": data.tenant_id,
            "email": data.email,
            "user_name": data.user_name,
            "locale": data.locale,
        }
        await issue_activation_token(
            conn, recipient, activation_url=data.activation_url, token_key=token_key, ttl=token_ttl
        )
    await announce(conn, str(data.request_id))
