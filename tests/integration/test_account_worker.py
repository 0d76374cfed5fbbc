"""The account commands in the worker (workers/accounts.py) against a real PostgreSQL:
recovery links, resets, changes and deletions, each applied once and only with the
gateway's authorization."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from schemas.events import (
    AccountDeleteRequested,
    PasswordChangeRequested,
    PasswordRecoveryRequested,
    PasswordResetRequested,
    envelope,
)
from service import account_requests, tokens
from service.sealing import derive_secret, seal
from tests.integration.test_logins import PASSWORD, cheap, new_user
from workers import accounts

RECOVER_URL = "https://app.example/recover/{passwordRecoveryToken}"
TTL = dt.timedelta(hours=1)
INTERVAL = dt.timedelta(seconds=60)


@pytest.fixture(scope="module")
def recovery_key(private_key: str) -> bytes:
    return derive_secret(private_key, "recovery-token")


async def recover(pool, tenant, login: str, key: bytes):
    data = PasswordRecoveryRequested(tenant_id=tenant.id, login=login, recover_url=RECOVER_URL)
    await accounts.send_recovery_link(
        envelope(data), data, pool=pool, token_key=key, ttl=TTL, interval=INTERVAL
    )


async def authorized(pool, tenant, user_id, kind, data):
    event = envelope(data)
    await account_requests.authorize(
        pool, command_id=event.id, tenant_id=tenant.id, user_id=user_id, kind=kind
    )
    return event


def sealed(settings, password: str) -> str:
    return seal(password, settings.seal_public_key)


async def test_recovery_mails_owners_once_per_interval_and_nobody_else(
    pool, make_tenant, recovery_key
):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    await recover(pool, tenant, f"nobody-{uuid.uuid4().hex[:6]}", recovery_key)
    await recover(pool, tenant, user["user_name"], recovery_key)
    await recover(pool, tenant, user["email"].upper(), recovery_key)  # within the interval
    rows = await pool.fetch(
        "SELECT e.params FROM emails e WHERE e.tenant_id = $1 AND kind = 'password_recovery'",
        tenant.id,
    )
    assert len(rows) == 1
    token = await pool.fetchrow(
        "SELECT id, token_hash, recover_url FROM password_recovery_tokens WHERE user_id = $1",
        user["id"],
    )
    # The mail names the row; the token itself is derived, and only its hash is stored.
    assert rows[0]["params"]["recovery_token_id"] == str(token["id"])
    derived = tokens.derive_token(recovery_key, token["id"])
    assert bytes(token["token_hash"]) == tokens.hash_secret(derived)
    assert derived not in str(rows[0]["params"])


async def test_a_newer_recovery_link_revokes_the_older(pool, make_tenant, recovery_key):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    await recover(pool, tenant, user["user_name"], recovery_key)
    await pool.execute(  # the interval has passed
        "UPDATE emails SET created_at = now() - interval '2 minutes' WHERE recipient = $1",
        user["email"],
    )
    await recover(pool, tenant, user["user_name"], recovery_key)
    rows = await pool.fetch(
        "SELECT revoked_at FROM password_recovery_tokens WHERE user_id = $1 ORDER BY created_at",
        user["id"],
    )
    assert [r["revoked_at"] is not None for r in rows] == [True, False]


async def test_a_reset_consumes_its_token_once_and_ends_sessions_and_lock_out(
    pool, make_tenant, recovery_key, settings, hasher
):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    await pool.execute(
        "UPDATE users SET locked_until = now() + interval '1 hour', failed_logins = 2 "
        "WHERE id = $1",
        user["id"],
    )
    await pool.execute(
        "INSERT INTO user_sessions (id, tenant_id, user_id, token_hash, ttl, expires_at) "
        "VALUES ($1, $2, $3, $4, '1 hour', now() + interval '1 hour')",
        uuid.uuid4(),
        tenant.id,
        user["id"],
        tokens.hash_secret("rgu_some-session"),
    )
    await recover(pool, tenant, user["user_name"], recovery_key)
    token_id = await pool.fetchval(
        "SELECT id FROM password_recovery_tokens WHERE user_id = $1", user["id"]
    )
    # Two gateways accepted the same token at once: two authorized commands race.
    racing = []
    for password in ("first new password", "second new password"):
        data = PasswordResetRequested(
            token_id=token_id, tenant_id=tenant.id, sealed_password=sealed(settings, password)
        )
        racing.append((await authorized(pool, tenant, user["id"], "reset", data), data))
    await asyncio.gather(
        *(
            accounts.reset_password(
                event,
                data,
                pool=pool,
                hasher=hasher,
                private_key=settings.seal_private_key.get_secret_value(),
            )
            for event, data in racing
        )
    )
    token = await pool.fetchrow(
        "SELECT used_by FROM password_recovery_tokens WHERE id = $1", token_id
    )
    winner = [event.id for event, _ in racing].index(token["used_by"])
    row = await pool.fetchrow("SELECT * FROM users WHERE id = $1", user["id"])
    hasher.verify(row["password_hash"], ("first new password", "second new password")[winner])
    assert row["locked_until"] is None and row["failed_logins"] == 0
    live = await pool.fetchval(
        "SELECT count(*) FROM user_sessions WHERE user_id = $1 AND revoked_at IS NULL", user["id"]
    )
    assert live == 0
    changed = await pool.fetch(
        "SELECT body FROM outbox WHERE routing_key = 'user.password_changed' "
        "AND body->>'subject' = $1",
        str(user["id"]),
    )
    assert len(changed) == 1 and changed[0]["body"]["data"]["via"] == "recovery"


async def test_without_the_gateways_authorization_nothing_changes(
    pool, make_tenant, settings, hasher
):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    private_key = settings.seal_private_key.get_secret_value()
    change = PasswordChangeRequested(
        user_id=user["id"], tenant_id=tenant.id, sealed_password=sealed(settings, "forged one!")
    )
    await accounts.change_password(
        envelope(change), change, pool=pool, hasher=hasher, private_key=private_key
    )
    delete = AccountDeleteRequested(user_id=user["id"], tenant_id=tenant.id)
    await accounts.delete_account(envelope(delete), delete, pool=pool)
    # An authorization for another user does not cover this one either.
    other = await new_user(pool, tenant)
    event = await authorized(pool, tenant, other["id"], "delete", delete)
    await accounts.delete_account(event, delete, pool=pool)

    row = await pool.fetchrow("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert row is not None and row["password_hash"] == user["password_hash"]
    cheap().verify(row["password_hash"], PASSWORD)


async def test_an_authorized_change_applies_once_and_may_skip_the_mail(
    pool, make_tenant, settings, hasher
):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    data = PasswordChangeRequested(
        user_id=user["id"],
        tenant_id=tenant.id,
        sealed_password=sealed(settings, "set by the admin"),
        send_mail_notification=False,
        by="admin",
    )
    event = await authorized(pool, tenant, user["id"], "change", data)
    private_key = settings.seal_private_key.get_secret_value()
    for _ in range(2):  # a redelivery changes nothing more
        await accounts.change_password(
            event, data, pool=pool, hasher=hasher, private_key=private_key
        )
    row = await pool.fetchrow("SELECT password_hash FROM users WHERE id = $1", user["id"])
    hasher.verify(row["password_hash"], "set by the admin")
    events = await pool.fetch(
        "SELECT body FROM outbox WHERE routing_key = 'user.password_changed' "
        "AND body->>'subject' = $1",
        str(user["id"]),
    )
    assert [e["body"]["data"]["via"] for e in events] == ["admin"]
    mails = await pool.fetchval(
        "SELECT count(*) FROM emails WHERE kind = 'password_changed' AND recipient = $1",
        user["email"],
    )
    assert mails == 0


async def test_a_deletion_erases_the_account_and_tells_its_owner(pool, make_tenant):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    data = AccountDeleteRequested(user_id=user["id"], tenant_id=tenant.id)
    event = await authorized(pool, tenant, user["id"], "delete", data)
    await accounts.delete_account(event, data, pool=pool)
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", user["id"]) == 0
    deleted = await pool.fetchrow(
        "SELECT body FROM outbox WHERE routing_key = 'user.deleted' AND body->>'subject' = $1",
        str(user["id"]),
    )
    assert deleted["body"]["data"]["by"] == "self"
    assert user["email"] not in str(deleted["body"])  # the event carries ids, not the address
    mail = await pool.fetchrow(
        "SELECT kind, params FROM emails WHERE recipient = $1 AND kind = 'account_deleted'",
        user["email"],
    )
    assert mail["params"]["user_name"] == user["user_name"]
