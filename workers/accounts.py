"""The account commands: mail a recovery link, set a new password (after a reset or a
change), erase an account. They run in the registration worker (same queue).

Each change is applied only with the authorization the gateway recorded for its command
(service.account_requests), claimed in the transaction that makes the change; the
recovery mail needs none (it only ever goes to the account's own address).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import asyncpg

from schemas.events import (
    AccountDeleteRequested,
    CloudEvent,
    PasswordChangeRequested,
    PasswordRecoveryRequested,
    PasswordResetRequested,
    UserDeleted,
    UserPasswordChanged,
)
from schemas.ids import uuid7
from service import account_requests, sessions, tokens
from service.emails import request_email
from service.errors import PermanentError
from service.logins import FIND_USER
from service.outbox import add_event
from service.outcomes import announce
from service.passwords import Hasher, hash_password
from service.sealing import UnsealError, unseal
from workers.dedup import first_delivery

log = logging.getLogger(__name__)
CONSUMER = "registration"  # the gateway waits for this consumer's processed record


async def _mailed_recently(
    conn: asyncpg.Connection, user: asyncpg.Record, interval: dt.timedelta
) -> bool:
    """A recovery mail went to this address within `interval` (our own emails table, so
    the throttle holds across processes; per kind, so it never holds back other mail)."""
    return bool(
        await conn.fetchval(
            "SELECT true FROM emails WHERE tenant_id = $1 AND kind = 'password_recovery' "
            "AND lower(recipient) = lower($2) AND created_at > now() - $3::interval LIMIT 1",
            user["tenant_id"],
            user["email"],
            interval,
        )
    )


async def send_recovery_link(
    event: CloudEvent,
    data: PasswordRecoveryRequested,
    *,
    pool: asyncpg.Pool,
    token_key: bytes,
    ttl: dt.timedelta,
    interval: dt.timedelta,
) -> None:
    """Mail a single-use recovery link to the user named by userName or email, if any.
    Older unused links stop working. Nothing happens for an unknown name: the caller got
    201 either way."""
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        found = await conn.fetchrow(FIND_USER, data.tenant_id, data.login)
        if found is None:
            return
        user = await conn.fetchrow(
            "SELECT id, tenant_id, email, user_name, locale FROM users WHERE id = $1 FOR UPDATE",
            found["id"],
        )
        if user is None or await _mailed_recently(conn, user, interval):
            log.info("recovery mail skipped (throttled or gone)")
            return
        await conn.execute(
            "UPDATE password_recovery_tokens SET revoked_at = now() "
            "WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            user["id"],
        )
        token_id = uuid7()
        await conn.execute(
            "INSERT INTO password_recovery_tokens (id, user_id, token_hash, recover_url, "
            "expires_at) VALUES ($1, $2, $3, $4, now() + $5::interval)",
            token_id,
            user["id"],
            tokens.hash_secret(tokens.derive_token(token_key, token_id)),
            data.recover_url,
            ttl,
        )
        await request_email(
            conn,
            tenant_id=user["tenant_id"],
            kind="password_recovery",
            to=user["email"],
            locale=user["locale"],
            user_name=user["user_name"],
            recover_url=data.recover_url,
            recovery_token_id=token_id,
        )
    log.info("recovery link mailed", extra={"user_id": str(user["id"])})


async def _new_hash(sealed_password: str, *, hasher: Hasher, private_key: str) -> str:
    try:
        password = unseal(sealed_password, private_key)
    except UnsealError as exc:
        raise PermanentError("the new password cannot be unsealed") from exc
    return await hash_password(hasher, password)


async def _set_password(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    password_hash: str,
    via: str,
    notify: bool,
) -> None:
    """The new hash; every session ends, a lock-out is lifted, outstanding recovery links
    die; user.password_changed is published and (unless told not to) the owner mailed."""
    user = await conn.fetchrow(
        "UPDATE users SET password_hash = $3, failed_logins = 0, first_failed_login_at = NULL, "
        "locked_until = NULL, updated_at = now() WHERE id = $1 AND tenant_id = $2 "
        "RETURNING id, email, user_name, locale, updated_at",
        user_id,
        tenant_id,
        password_hash,
    )
    if user is None:
        return  # erased meanwhile
    await sessions.revoke_all(conn, user_id)
    await conn.execute(
        "UPDATE password_recovery_tokens SET revoked_at = now() "
        "WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
        user_id,
    )
    await add_event(
        conn,
        UserPasswordChanged(user_id=user_id, tenant_id=tenant_id, at=user["updated_at"], via=via),
        subject=str(user_id),
    )
    if notify:
        await request_email(
            conn,
            tenant_id=tenant_id,
            kind="password_changed",
            to=user["email"],
            locale=user["locale"],
            user_name=user["user_name"],
            changed_at=user["updated_at"],
        )


async def reset_password(
    event: CloudEvent,
    data: PasswordResetRequested,
    *,
    pool: asyncpg.Pool,
    hasher: Hasher,
    private_key: str,
) -> None:
    """Consume the recovery token once and set the new password."""
    password_hash = await _new_hash(data.sealed_password, hasher=hasher, private_key=private_key)
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        authorized_user = await account_requests.claim(
            conn, command_id=event.id, tenant_id=data.tenant_id, user_id=None, kind="reset"
        )
        if authorized_user is None:
            log.warning("unauthorized password reset ignored", extra={"event_id": str(event.id)})
            return
        user_id = await conn.fetchval(
            "UPDATE password_recovery_tokens SET used_at = now(), used_by = $2 "
            "WHERE id = $1 AND user_id = $3 AND used_at IS NULL AND revoked_at IS NULL "
            "AND expires_at > now() RETURNING user_id",
            data.token_id,
            event.id,
            authorized_user,
        )
        if user_id is not None:
            await _set_password(
                conn,
                user_id=user_id,
                tenant_id=data.tenant_id,
                password_hash=password_hash,
                via="recovery",
                notify=True,
            )
        await announce(conn, str(data.token_id))


async def change_password(
    event: CloudEvent,
    data: PasswordChangeRequested,
    *,
    pool: asyncpg.Pool,
    hasher: Hasher,
    private_key: str,
) -> None:
    """Set the new password the gateway authorized (by the user or an administrator)."""
    password_hash = await _new_hash(data.sealed_password, hasher=hasher, private_key=private_key)
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        if await account_requests.claim(
            conn, command_id=event.id, tenant_id=data.tenant_id, user_id=data.user_id, kind="change"
        ):
            await _set_password(
                conn,
                user_id=data.user_id,
                tenant_id=data.tenant_id,
                password_hash=password_hash,
                via=data.by,
                notify=data.send_mail_notification,
            )
        else:
            log.warning("unauthorized password change ignored", extra={"event_id": str(event.id)})
        await announce(conn, str(event.id))


async def delete_account(
    event: CloudEvent, data: AccountDeleteRequested, *, pool: asyncpg.Pool
) -> None:
    """Erase the account: its row and everything hanging from it (roles, tokens,
    sessions); its email and userName become free. user.deleted is published and a last
    email tells the owner."""
    async with pool.acquire() as conn, conn.transaction():
        if not await first_delivery(conn, event, consumer=CONSUMER):
            return
        authorized = await account_requests.claim(
            conn, command_id=event.id, tenant_id=data.tenant_id, user_id=data.user_id, kind="delete"
        )
        user = None
        if authorized:
            user = await conn.fetchrow(
                "DELETE FROM users WHERE id = $1 AND tenant_id = $2 "
                "RETURNING email, user_name, locale, now() AS at",
                data.user_id,
                data.tenant_id,
            )
        else:
            log.warning("unauthorized account deletion ignored", extra={"event_id": str(event.id)})
        if user is not None:
            await add_event(
                conn,
                UserDeleted(
                    user_id=data.user_id, tenant_id=data.tenant_id, at=user["at"], by="self"
                ),
                subject=str(data.user_id),
            )
            await request_email(
                conn,
                tenant_id=data.tenant_id,
                kind="account_deleted",
                to=user["email"],
                locale=user["locale"],
                user_name=user["user_name"],
            )
        await announce(conn, str(event.id))
