"""Login, sessions and the lock-out against a real PostgreSQL (service.logins,
service.sessions); the HTTP side is tests/e2e/test_account_life_cycle.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
import pytest
from argon2 import PasswordHasher, Type

from schemas.ids import uuid7
from service import logins, sessions
from service.logins import LoginFailed, LoginPolicy
from service.passwords import ChecksBusy, PasswordChecker

POLICY = LoginPolicy(
    max_failures=3,
    window=dt.timedelta(minutes=15),
    lockout=dt.timedelta(minutes=15),
    token_ttl=dt.timedelta(hours=2),
)
PASSWORD = "correct horse battery"


def cheap(time_cost: int = 1) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=8192, parallelism=1, type=Type.ID)


@pytest.fixture
def checker():
    checker = PasswordChecker(cheap(), threads=1, queue=8)
    yield checker
    checker.close()


async def new_user(
    pool: asyncpg.Pool, tenant, *, approved: bool = True, hasher: PasswordHasher | None = None
) -> asyncpg.Record:
    tag = uuid.uuid4().hex[:8]
    return await pool.fetchrow(
        "INSERT INTO users (id, tenant_id, user_name, email, password_hash, locale, "
        "is_approved, source) VALUES ($1, $2, $3, $4, $5, 'en', $6, 'self') RETURNING *",
        uuid7(),
        tenant.id,
        f"user_{tag}",
        f"user-{tag}@example.com",
        (hasher or cheap()).hash(PASSWORD),
        approved,
    )


async def log_in(pool, checker, tenant, name: str, password: str = PASSWORD, **kw):
    return await logins.login(
        pool,
        checker,
        kw.pop("policy", POLICY),
        tenant_id=tenant.id,
        login_name=name,
        password=password,
        sliding=kw.pop("sliding", False),
    )


async def test_login_by_user_name_or_email_issues_a_token_stored_only_as_a_hash(
    pool, make_tenant, checker
):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    by_name = await log_in(pool, checker, tenant, user["user_name"].upper())
    by_email = await log_in(pool, checker, tenant, user["email"])
    assert by_name.access_token.startswith(sessions.PREFIX)
    stored = await pool.fetch("SELECT token_hash FROM user_sessions WHERE user_id = $1", user["id"])
    assert len(stored) == 2
    assert all(by_name.access_token.encode() not in bytes(r["token_hash"]) for r in stored)
    for grant in (by_name, by_email):
        session = await sessions.use_session(pool, tenant_id=tenant.id, token=grant.access_token)
        assert session is not None and session.user_id == user["id"]


async def test_a_user_name_wins_over_another_users_email(pool, make_tenant, checker):
    tenant = await make_tenant()
    owner_of_address = await new_user(pool, tenant)
    # Another user whose userName is that address (userNames may contain @).
    named_like_it = await pool.fetchrow(
        "INSERT INTO users (id, tenant_id, user_name, email, password_hash, locale, is_approved, "
        "source) VALUES ($1, $2, $3, $4, $5, 'en', true, 'self') RETURNING *",
        uuid7(),
        tenant.id,
        owner_of_address["email"],
        f"other-{uuid.uuid4().hex[:6]}@example.com",
        cheap().hash("the other password"),
    )
    grant = await log_in(pool, checker, tenant, owner_of_address["email"], "the other password")
    session = await sessions.use_session(pool, tenant_id=tenant.id, token=grant.access_token)
    assert session.user_id == named_like_it["id"]


async def test_a_token_works_only_in_its_own_tenant(pool, make_tenant, checker):
    tenant, other = await make_tenant(), await make_tenant()
    user = await new_user(pool, tenant)
    grant = await log_in(pool, checker, tenant, user["user_name"])
    assert await sessions.use_session(pool, tenant_id=other.id, token=grant.access_token) is None


async def test_failures_lock_the_account_once_and_publish_and_mail(pool, make_tenant, checker):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    for _ in range(POLICY.max_failures + 2):
        with pytest.raises(LoginFailed):
            await log_in(pool, checker, tenant, user["user_name"], "wrong password")
    row = await pool.fetchrow("SELECT locked_until FROM users WHERE id = $1", user["id"])
    assert row["locked_until"] > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=14)
    # Locked: even the right password is refused, with the same error.
    with pytest.raises(LoginFailed):
        await log_in(pool, checker, tenant, user["user_name"])
    locked_events = await pool.fetch(
        "SELECT body FROM outbox WHERE routing_key = 'user.locked' AND body->>'subject' = $1",
        str(user["id"]),
    )
    assert len(locked_events) == 1  # failures while locked do not lock again
    mails = await pool.fetchval(
        "SELECT count(*) FROM emails WHERE kind = 'locked_out' AND recipient = $1", user["email"]
    )
    assert mails == 1


async def test_failures_outside_the_window_start_a_new_count(pool, make_tenant, checker):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    for _ in range(POLICY.max_failures - 1):
        with pytest.raises(LoginFailed):
            await log_in(pool, checker, tenant, user["user_name"], "wrong password")
    # The window opened long ago: the next failure counts as the first of a new window.
    await pool.execute(
        "UPDATE users SET first_failed_login_at = now() - interval '1 hour' WHERE id = $1",
        user["id"],
    )
    with pytest.raises(LoginFailed):
        await log_in(pool, checker, tenant, user["user_name"], "wrong password")
    assert await pool.fetchval("SELECT failed_logins FROM users WHERE id = $1", user["id"]) == 1
    await log_in(pool, checker, tenant, user["user_name"])  # not locked
    assert await pool.fetchval("SELECT failed_logins FROM users WHERE id = $1", user["id"]) == 0


async def test_an_expired_lock_out_lets_the_owner_in(pool, make_tenant, checker):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    await pool.execute(
        "UPDATE users SET locked_until = now() - interval '1 second' WHERE id = $1", user["id"]
    )
    await log_in(pool, checker, tenant, user["user_name"])


async def test_an_unactivated_user_cannot_sign_in(pool, make_tenant, checker):
    tenant = await make_tenant()
    user = await new_user(pool, tenant, approved=False)
    with pytest.raises(LoginFailed):
        await log_in(pool, checker, tenant, user["user_name"])


async def test_a_hash_with_old_parameters_is_replaced_at_a_good_login(pool, make_tenant):
    tenant = await make_tenant()
    user = await new_user(pool, tenant, hasher=cheap(time_cost=1))
    upgraded = PasswordChecker(cheap(time_cost=2), threads=1, queue=4)
    try:
        await log_in(pool, upgraded, tenant, user["user_name"])
        stored = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
        assert stored != user["password_hash"] and ",t=2," in stored
        assert not upgraded.hasher.check_needs_rehash(stored)
        await log_in(pool, upgraded, tenant, user["user_name"])  # the new hash verifies
    finally:
        upgraded.close()


async def test_sliding_tokens_move_their_expiry_and_fixed_ones_do_not(pool, make_tenant, checker):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    sliding = await log_in(pool, checker, tenant, user["user_name"], sliding=True)
    fixed = await log_in(pool, checker, tenant, user["user_name"])
    assert sliding.body()["sliding_window"] == sliding.expires_in
    assert "sliding_window" not in fixed.body()
    await pool.execute(
        "UPDATE user_sessions SET expires_at = now() + interval '1 minute' WHERE user_id = $1",
        user["id"],
    )
    for grant in (sliding, fixed):
        await sessions.use_session(pool, tenant_id=tenant.id, token=grant.access_token)
    rows = {
        r["sliding"]: r["expires_at"]
        for r in await pool.fetch(
            "SELECT sliding, expires_at FROM user_sessions WHERE user_id = $1", user["id"]
        )
    }
    now = dt.datetime.now(dt.UTC)
    assert rows[True] > now + dt.timedelta(hours=1)  # slid to now + ttl
    assert rows[False] < now + dt.timedelta(minutes=2)  # unchanged


async def test_refresh_kills_the_old_token_and_expired_tokens_are_dead(pool, make_tenant, checker):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    grant = await log_in(pool, checker, tenant, user["user_name"])
    fresh = await sessions.refresh_session(pool, tenant_id=tenant.id, token=grant.access_token)
    assert fresh is not None
    assert await sessions.use_session(pool, tenant_id=tenant.id, token=grant.access_token) is None
    assert (
        await sessions.refresh_session(pool, tenant_id=tenant.id, token=grant.access_token) is None
    )
    await pool.execute(
        "UPDATE user_sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1",
        user["id"],
    )
    assert await sessions.use_session(pool, tenant_id=tenant.id, token=fresh.access_token) is None


async def test_an_administrators_lock_stops_live_tokens(pool, make_tenant, checker):
    tenant = await make_tenant()
    user = await new_user(pool, tenant)
    grant = await log_in(pool, checker, tenant, user["user_name"])
    await pool.execute("UPDATE users SET is_locked_out = true WHERE id = $1", user["id"])
    assert await sessions.use_session(pool, tenant_id=tenant.id, token=grant.access_token) is None


async def test_the_checker_refuses_at_once_beyond_its_queue():
    """At most threads + queue checks are admitted; the next gets ChecksBusy (503) at once
    instead of waiting behind a storm."""
    checker = PasswordChecker(cheap(time_cost=3), threads=1, queue=2)
    try:
        stored = checker.hasher.hash(PASSWORD)
        admitted = [asyncio.create_task(checker.verify(stored, "wrong")) for _ in range(3)]
        await asyncio.sleep(0)  # let them take their places
        assert checker.in_progress == 3
        with pytest.raises(ChecksBusy):
            await checker.verify(stored, "wrong")
        assert [ok for ok, _ in await asyncio.gather(*admitted)] == [False, False, False]
        assert checker.in_progress == 0
        assert (await checker.verify(stored, PASSWORD))[0] is True
        assert (await checker.verify(None, PASSWORD)) == (False, False)  # the dummy hash
    finally:
        checker.close()


async def test_a_refused_login_costs_no_database_query(make_tenant):
    """With the check queue full, login refuses (503 busy) before looking the user up:
    a storm of refused logins does not turn into a storm of queries."""
    checker = PasswordChecker(cheap(time_cost=3), threads=1, queue=0)
    try:
        stored = checker.hasher.hash(PASSWORD)
        running = asyncio.create_task(checker.verify(stored, "wrong"))
        await asyncio.sleep(0)
        tenant = await make_tenant()
        with pytest.raises(ChecksBusy):
            await log_in(None, checker, tenant, "anyone")  # no pool: no query was tried
        await running
    finally:
        checker.close()


async def test_verifications_run_at_the_configured_niceness():
    import os
    import threading

    checker = PasswordChecker(cheap(), threads=1, queue=1, nice=7)
    try:
        loop = asyncio.get_running_loop()
        nice = await loop.run_in_executor(
            checker._executor,
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
        )
        assert nice == max(7, os.getpriority(os.PRIO_PROCESS, 0))
    finally:
        checker.close()
