"""Users an administrator creates (POST /{apiKey}/users, SPEC §11), carried out by the
registration worker like any registration (workers.registration): the same command,
request row, insert, uniqueness and outcome; here is what it decides differently. What
the administrator chose beyond the form (name, roles, approval, whether to mail) comes
from the request row, where the gateway recorded it after checking the tenant token,
never from the command.

Mail: with `sendEmailNotification`, a user who is not approved gets an activation link
(to the activationUrl given), one who is approved a welcome note; without it, nothing.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from schemas.events import RegisterRequested, UserRegistered
from service.emails import request_email
from service.outbox import add_event
from service.outcomes import announce
from workers.activation import issue_activation_token


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
