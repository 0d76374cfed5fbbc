"""The invitation worker: creates invitations (and their emails) and turns an accepted
invitation into an approved user. Each decision commits with its outbox rows."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import asyncpg

from schemas.events import (
    CloudEvent,
    InvitationAccepted,
    InvitationAcceptRequested,
    InvitationSent,
    InviteRequested,
    UserRegistered,
)
from service import tokens
from service.emails import request_email
from service.errors import PermanentError, RetryableError
from service.outbox import add_event
from service.outcomes import announce
from service.passwords import Hasher, hash_password
from service.sealing import UnsealError, unseal
from workers.dedup import first_delivery

log = logging.getLogger(__name__)
CONSUMER = "invitation"


async def invite_user(
    event: CloudEvent,
    data: InviteRequested,
    *,
    pool: asyncpg.Pool,
    token_key: bytes,
    ttl: dt.timedelta,
) -> None:
    """Create the invitation, revoking an older pending one; skip existing members."""
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        if await conn.fetchval(
            "SELECT true FROM invitations WHERE request_id = $1", data.request_id
        ):
            return  # the same request published again (idempotent retry)
        if data.role_id is not None and not await conn.fetchval(
            "SELECT true FROM roles WHERE id = $1 AND tenant_id = $2", data.role_id, data.tenant_id
        ):
            raise PermanentError("the role is not one of this tenant's")
        member = await conn.fetchval(
            "SELECT true FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)",
            data.tenant_id,
            data.email,
        )
        if member:
            log.info(
                "invitee is already a member; no invitation",
                extra={"request_id": str(data.request_id)},
            )
            return
        await conn.execute(
            "UPDATE invitations SET status = 'revoked' "
            "WHERE tenant_id = $1 AND lower(email) = lower($2) AND status = 'pending'",
            data.tenant_id,
            data.email,
        )
        invitation_id = uuid.uuid4()
        try:
            async with conn.transaction():
                expires_at = await conn.fetchval(
                    """
                    INSERT INTO invitations (id, tenant_id, request_id, email, locale, name,
                                             role_id, token_hash, expires_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)
                    RETURNING expires_at
                    """,
                    invitation_id,
                    data.tenant_id,
                    data.request_id,
                    data.email,
                    data.locale,
                    data.name,
                    data.role_id,
                    tokens.hash_secret(tokens.derive_token(token_key, invitation_id)),
                    ttl,
                )
        except asyncpg.UniqueViolationError as exc:
            # A concurrent invitation for the same address committed first: try again,
            # and this one will revoke it.
            raise RetryableError("concurrent invitation for the same address") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise PermanentError("the role no longer exists") from exc
        await add_event(
            conn,
            InvitationSent(
                invitation_id=invitation_id,
                tenant_id=data.tenant_id,
                email=data.email,
                locale=data.locale,
                expires_at=expires_at,
            ),
            subject=str(invitation_id),
        )
        await request_email(
            conn,
            tenant_id=data.tenant_id,
            kind="invitation",
            to=data.email,
            locale=data.locale,
            name=data.name,
            invitation_id=invitation_id,
            expires_at=expires_at,
        )
    log.info("invitation created", extra={"invitation_id": str(invitation_id)})


async def _decide(
    conn: asyncpg.Connection,
    invitation_id: uuid.UUID,
    event: CloudEvent,
    decision: str,
    *,
    user_id: uuid.UUID | None = None,
) -> None:
    status = "accepted" if decision == "accepted" else "revoked"
    await conn.execute(
        "UPDATE invitations SET status = $2, decision = $3, decided_by = $4, user_id = $5, "
        "accepted_at = CASE WHEN $2 = 'accepted' THEN now() END WHERE id = $1",
        invitation_id,
        status,
        decision,
        event.id,
        user_id,
    )


async def accept_invitation(
    event: CloudEvent,
    data: InvitationAcceptRequested,
    *,
    pool: asyncpg.Pool,
    hasher: Hasher,
    private_key: str,
) -> None:
    """Create the approved user from a pending invitation, once."""
    try:
        password = unseal(data.sealed_password, private_key)
    except UnsealError as exc:
        raise PermanentError("the password was not sealed for this worker") from exc
    password_hash = await hash_password(hasher, password)
    del password

    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        invitation = await conn.fetchrow(
            "SELECT * FROM invitations WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
            data.invitation_id,
            data.tenant_id,
        )
        usable = (
            invitation is not None
            and invitation["status"] == "pending"
            and invitation["expires_at"] > dt.datetime.now(dt.UTC)
        )
        if not usable:
            if invitation is not None and invitation["status"] == "pending":
                # Expired since the gateway looked: record that this command found it so,
                # or the waiting caller could not tell "gone" from "still deciding".
                await conn.execute(
                    "UPDATE invitations SET decided_by = $2 WHERE id = $1",
                    invitation["id"],
                    event.id,
                )
            await announce(conn, str(data.invitation_id))
            return
        try:
            async with conn.transaction():
                user = await conn.fetchrow(
                    """
                    INSERT INTO users (id, tenant_id, user_name, email, name, password_hash,
                                       locale, is_approved, source)
                    VALUES ($1, $2, $3, $3, $4, $5, $6, true, 'invitation')
                    RETURNING id, created_at
                    """,
                    uuid.uuid4(),
                    data.tenant_id,
                    invitation["email"],
                    data.name,
                    password_hash,
                    invitation["locale"],
                )
        except asyncpg.UniqueViolationError:
            await _decide(conn, data.invitation_id, event, "email_taken")
            await announce(conn, str(data.invitation_id))
            return
        roles = await conn.fetch(
            """
            INSERT INTO user_roles (user_id, role_id)
            SELECT $1, id FROM roles
             WHERE tenant_id = $2 AND (id = $3 OR ($3::uuid IS NULL AND lower(name) = 'user'))
            RETURNING (SELECT name FROM roles r WHERE r.id = role_id)
            """,
            user["id"],
            data.tenant_id,
            invitation["role_id"],
        )
        await _decide(conn, data.invitation_id, event, "accepted", user_id=user["id"])
        await add_event(
            conn,
            InvitationAccepted(
                invitation_id=data.invitation_id, tenant_id=data.tenant_id, user_id=user["id"]
            ),
            subject=str(data.invitation_id),
        )
        await add_event(
            conn,
            UserRegistered(
                user_id=user["id"],
                tenant_id=data.tenant_id,
                email=invitation["email"],
                user_name=invitation["email"],
                name=data.name,
                locale=invitation["locale"],
                is_approved=True,
                roles=[r[0] for r in roles],
                source="invitation",
                registered_at=user["created_at"],
                request_id=invitation["request_id"],
            ),
            subject=str(user["id"]),
        )
        await request_email(
            conn,
            tenant_id=data.tenant_id,
            kind="welcome",
            to=invitation["email"],
            locale=invitation["locale"],
            name=data.name,
            user_created_at=user["created_at"],
        )
        await announce(conn, str(data.invitation_id))
    log.info("invitation accepted", extra={"invitation_id": str(data.invitation_id)})
