"""The registration worker's handlers against real PostgreSQL (no broker in between)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from functools import partial

import asyncpg
import pytest
from argon2 import PasswordHasher

from schemas.events import (
    EVENTS,
    ActivationRequested,
    ActivationResendRequested,
    envelope,
)
from service import tokens
from service.sealing import generate_key_pair, seal
from service.tenants import Tenant
from tests.integration.conftest import TOKEN_TTL, MakeTenant
from workers import activation, registration


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def activate(pool: asyncpg.Pool):
    return partial(activation.activate_user, pool=pool)


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


async def request_row(pool: asyncpg.Pool, request_id: uuid.UUID) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM registration_requests WHERE id = $1", request_id)


async def outbox_of(pool: asyncpg.Pool, tenant: Tenant) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT routing_key, event_id, body, body::text AS text FROM outbox "
        "WHERE body->'data'->>'tenantId' = $1 ORDER BY id",
        str(tenant.id),
    )


async def users_of(pool: asyncpg.Pool, tenant: Tenant) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM users WHERE tenant_id = $1", tenant.id)


async def test_register_user_creates_user_role_token_email_and_outbox_events(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register, token_key: bytes
) -> None:
    email, user_name = f"{unique('ann')}@example.com", unique("ann")
    req = await new_request(tenant, email=email, user_name=user_name)

    await register(req.event, req.data)

    [user] = await users_of(pool, tenant)
    assert (user["email"], user["user_name"], user["locale"]) == (email, user_name, "en")
    assert user["password_hash"].startswith("$argon2id$")
    assert PasswordHasher().verify(user["password_hash"], req.password)
    assert user["is_approved"] is False
    assert user["source"] == "self"

    row = await request_row(pool, req.data.request_id)
    assert (row["status"], row["user_id"], row["reason"]) == ("registered", user["id"], None)
    assert row["decided_at"] is not None

    roles = await pool.fetch(
        "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1",
        user["id"],
    )
    assert [r["name"] for r in roles] == ["User"]

    [token] = await pool.fetch("SELECT * FROM activation_tokens WHERE user_id = $1", user["id"])
    plaintext_token = tokens.derive_token(token_key, token["id"])
    assert bytes(token["token_hash"]) == hashlib.sha256(plaintext_token.encode()).digest()
    assert token["used_at"] is None
    assert dt.timedelta(hours=47) < token["expires_at"] - token["created_at"] <= TOKEN_TTL

    [email_row] = await pool.fetch("SELECT * FROM emails WHERE tenant_id = $1", tenant.id)
    assert (email_row["kind"], email_row["recipient"], email_row["status"]) == (
        "activation",
        email,
        "pending",
    )

    outbox = await outbox_of(pool, tenant)
    assert [r["routing_key"] for r in outbox] == ["user.registered", "email.requested"]
    registered, email_requested = (r["body"] for r in outbox)
    for row, body in zip(outbox, (registered, email_requested), strict=True):
        assert body["type"] == EVENTS[row["routing_key"]][0]
        assert body["id"] == str(row["event_id"])
    assert registered["data"]["userId"] == str(user["id"])
    assert registered["data"]["requestId"] == str(req.data.request_id)
    assert registered["data"]["roles"] == ["User"]
    assert registered["data"]["isApproved"] is False
    # The command names the row; the row holds what the mailer renders (SPEC §5).
    assert email_requested["data"] == {
        "emailId": str(email_row["id"]),
        "tenantId": str(tenant.id),
    }
    assert email_row["params"]["activation_token_id"] == str(token["id"])
    assert email_row["recipient"] == email
    for row in outbox:
        assert req.password not in row["text"]
        assert plaintext_token not in row["text"]
        assert req.data.sealed_password not in row["text"]

    assert (
        await pool.fetchval(
            "SELECT count(*) FROM processed_messages WHERE consumer = $1 AND message_id = $2",
            registration.CONSUMER,
            req.event.id,
        )
        == 1
    )


async def test_email_taken_in_another_letter_case_rejects_the_request_with_email_taken(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    local = unique("bob")
    first = await new_request(tenant, email=f"{local}@example.com", user_name=unique("bob"))
    await register(first.event, first.data)

    second = await new_request(
        tenant, email=f"{local.upper()}@EXAMPLE.com", user_name=unique("other")
    )
    await register(second.event, second.data)

    row = await request_row(pool, second.data.request_id)
    assert (row["status"], row["reason"], row["user_id"]) == ("rejected", "email_taken", None)
    assert len(await users_of(pool, tenant)) == 1
    rejected = [
        r["body"]
        for r in await outbox_of(pool, tenant)
        if r["routing_key"] == ("registration.rejected")
    ]
    assert [b["data"] for b in rejected] == [
        {
            "requestId": str(second.data.request_id),
            "tenantId": str(tenant.id),
            "reason": "email_taken",
        }
    ]
    assert rejected[0]["type"] == "registrar.registration.rejected.v1"


async def test_user_name_taken_in_another_letter_case_rejects_the_request_with_username_taken(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    user_name = unique("Carol_")
    first = await new_request(tenant, email=f"{unique('c')}@example.com", user_name=user_name)
    await register(first.event, first.data)

    second = await new_request(
        tenant, email=f"{unique('d')}@example.com", user_name=user_name.swapcase()
    )
    await register(second.event, second.data)

    row = await request_row(pool, second.data.request_id)
    assert (row["status"], row["reason"]) == ("rejected", "username_taken")
    assert len(await users_of(pool, tenant)) == 1
    reasons = [
        r["body"]["data"]["reason"]
        for r in await outbox_of(pool, tenant)
        if r["routing_key"] == "registration.rejected"
    ]
    assert reasons == ["username_taken"]


async def test_an_email_and_a_user_name_taken_by_two_users_reject_with_email_taken(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    email, user_name = f"{unique('erin')}@example.com", unique("erin")
    for taken in (
        await new_request(tenant, email=email, user_name=unique("x")),
        await new_request(tenant, email=f"{unique('y')}@example.com", user_name=user_name),
    ):
        await register(taken.event, taken.data)

    both = await new_request(tenant, email=email, user_name=user_name)
    await register(both.event, both.data)

    row = await request_row(pool, both.data.request_id)
    assert (row["status"], row["reason"]) == ("rejected", "email_taken")
    assert len(await users_of(pool, tenant)) == 2


async def test_the_same_email_and_user_name_register_in_two_different_tenants(
    pool: asyncpg.Pool, make_tenant: MakeTenant, new_request, register
) -> None:
    email, user_name = f"{unique('dan')}@example.com", unique("dan")
    one, two = await make_tenant(), await make_tenant()
    for tenant in (one, two):
        req = await new_request(tenant, email=email, user_name=user_name)
        await register(req.event, req.data)
        assert (await request_row(pool, req.data.request_id))["status"] == "registered"
        assert len(await users_of(pool, tenant)) == 1


async def test_two_concurrent_requests_for_the_same_email_register_exactly_one_user(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    email = f"{unique('eve')}@example.com"
    one = await new_request(tenant, email=email, user_name=unique("eve1"))
    two = await new_request(tenant, email=email, user_name=unique("eve2"))

    await asyncio.gather(register(one.event, one.data), register(two.event, two.data))

    users = await users_of(pool, tenant)
    assert len(users) == 1
    rows = [await request_row(pool, r.data.request_id) for r in (one, two)]
    assert sorted((r["status"], r["reason"]) for r in rows) == [
        ("registered", None),
        ("rejected", "email_taken"),
    ]
    [winner] = [r for r in rows if r["status"] == "registered"]
    assert winner["user_id"] == users[0]["id"]
    keys = sorted(r["routing_key"] for r in await outbox_of(pool, tenant))
    assert keys == ["email.requested", "registration.rejected", "user.registered"]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM activation_tokens WHERE user_id = $1", users[0]["id"]
        )
        == 1
    )


async def test_redelivery_of_the_same_register_event_is_a_no_op(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    req = await new_request(tenant, email=f"{unique('fay')}@example.com", user_name=unique("fay"))
    await register(req.event, req.data)
    outbox_before = await outbox_of(pool, tenant)
    row_before = await request_row(pool, req.data.request_id)

    await register(req.event, req.data)  # the broker redelivers
    # The gateway republishing the same request under a new CloudEvents id changes nothing either.
    await register(envelope(req.data, subject=str(req.data.request_id)), req.data)

    assert len(await users_of(pool, tenant)) == 1
    assert await outbox_of(pool, tenant) == outbox_before
    assert await request_row(pool, req.data.request_id) == row_before
    assert await pool.fetchval("SELECT count(*) FROM emails WHERE tenant_id = $1", tenant.id) == 1


async def test_concurrent_deliveries_of_the_same_register_event_create_one_user(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    req = await new_request(tenant, email=f"{unique('gus')}@example.com", user_name=unique("gus"))

    await asyncio.gather(register(req.event, req.data), register(req.event, req.data))

    assert len(await users_of(pool, tenant)) == 1
    assert (await request_row(pool, req.data.request_id))["status"] == "registered"
    keys = [r["routing_key"] for r in await outbox_of(pool, tenant)]
    assert keys == ["user.registered", "email.requested"]


@pytest.mark.parametrize(
    "sealed_password",
    [
        "garbage",
        "bm90IGEgc2VhbGVkIGJveCBhdCBhbGw=",  # valid base64, not a sealed box
        seal("sealed-for-someone-else", generate_key_pair()[0]),
    ],
    ids=["not-base64", "not-a-sealed-box", "sealed-for-another-key"],
)
async def test_a_password_that_cannot_be_unsealed_rejects_the_request_with_invalid_request(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register, sealed_password: str
) -> None:
    req = await new_request(
        tenant,
        email=f"{unique('hal')}@example.com",
        user_name=unique("hal"),
        sealed_password=sealed_password,
    )

    await register(req.event, req.data)

    row = await request_row(pool, req.data.request_id)
    assert (row["status"], row["reason"], row["user_id"]) == ("rejected", "invalid_request", None)
    assert await users_of(pool, tenant) == []
    outbox = await outbox_of(pool, tenant)
    assert [(r["routing_key"], r["body"]["data"]["reason"]) for r in outbox] == [
        ("registration.rejected", "invalid_request")
    ]


async def registered_user(pool, tenant, new_request, register) -> tuple[asyncpg.Record, uuid.UUID]:
    req = await new_request(tenant, email=f"{unique('ivy')}@example.com", user_name=unique("ivy"))
    await register(req.event, req.data)
    [user] = await users_of(pool, tenant)
    token_id = await pool.fetchval(
        "SELECT id FROM activation_tokens WHERE user_id = $1", user["id"]
    )
    return user, token_id


async def test_activate_user_approves_the_user_consumes_the_token_and_emits_user_activated(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register, activate
) -> None:
    user, token_id = await registered_user(pool, tenant, new_request, register)
    command = envelope(ActivationRequested(token_id=token_id, tenant_id=tenant.id))

    await activate(command, ActivationRequested.model_validate(command.data))

    approved = await pool.fetchrow("SELECT * FROM users WHERE id = $1", user["id"])
    assert approved["is_approved"] is True
    token = await pool.fetchrow("SELECT * FROM activation_tokens WHERE id = $1", token_id)
    assert token["used_at"] is not None
    assert token["used_by"] == command.id
    activated = [
        r["body"] for r in await outbox_of(pool, tenant) if r["routing_key"] == ("user.activated")
    ]
    assert len(activated) == 1
    assert activated[0]["type"] == "registrar.user.activated.v1"
    assert activated[0]["data"]["userId"] == str(user["id"])
    assert activated[0]["subject"] == str(user["id"])
    assert dt.datetime.fromisoformat(activated[0]["data"]["activatedAt"]) == approved["updated_at"]


async def test_a_second_activation_request_for_the_same_token_does_nothing(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register, activate
) -> None:
    user, token_id = await registered_user(pool, tenant, new_request, register)
    data = ActivationRequested(token_id=token_id, tenant_id=tenant.id)
    first, second = envelope(data), envelope(data)
    await activate(first, data)
    token_before = await pool.fetchrow("SELECT * FROM activation_tokens WHERE id = $1", token_id)
    outbox_before = await outbox_of(pool, tenant)

    await activate(second, data)
    await activate(first, data)  # and a redelivery of the first

    token = await pool.fetchrow("SELECT * FROM activation_tokens WHERE id = $1", token_id)
    assert token == token_before
    assert token["used_by"] == first.id
    assert await outbox_of(pool, tenant) == outbox_before
    assert await pool.fetchval("SELECT is_approved FROM users WHERE id = $1", user["id"]) is True


async def test_an_expired_activation_token_neither_approves_the_user_nor_emits_an_event(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register, activate
) -> None:
    user, token_id = await registered_user(pool, tenant, new_request, register)
    await pool.execute(
        "UPDATE activation_tokens SET expires_at = now() - interval '1 second' WHERE id = $1",
        token_id,
    )
    data = ActivationRequested(token_id=token_id, tenant_id=tenant.id)

    await activate(envelope(data), data)

    assert await pool.fetchval("SELECT is_approved FROM users WHERE id = $1", user["id"]) is False
    assert (
        await pool.fetchval("SELECT used_at FROM activation_tokens WHERE id = $1", token_id) is None
    )
    assert "user.activated" not in [r["routing_key"] for r in await outbox_of(pool, tenant)]


async def test_a_dead_lettered_registration_is_failed_not_pending_and_replay_revives_it(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    req = await new_request(tenant, email=f"{unique('dl')}@example.com", user_name=unique("dl"))

    await registration.record_failure(req.event, req.data, pool=pool, error="KeyError: bug")
    row = await request_row(pool, req.data.request_id)
    assert (row["status"], row["reason"]) == ("failed", "processing_failed")

    # `registrar dlq replay` brings the command back once the bug is fixed.
    await register(req.event, req.data)
    assert (await request_row(pool, req.data.request_id))["status"] == "registered"
    assert len(await users_of(pool, tenant)) == 1


async def test_the_failure_hook_never_undoes_a_decision(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    req = await new_request(tenant, email=f"{unique('ok')}@example.com", user_name=unique("ok"))
    await register(req.event, req.data)
    await registration.record_failure(req.event, req.data, pool=pool, error="late copy")
    assert (await request_row(pool, req.data.request_id))["status"] == "registered"


async def emails_of(pool: asyncpg.Pool, tenant: Tenant) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT kind, recipient FROM emails WHERE tenant_id = $1 ORDER BY created_at", tenant.id
    )
    return [(r["kind"], r["recipient"]) for r in rows]


async def test_silent_tenant_mails_the_address_that_tried_a_taken_user_name(
    pool: asyncpg.Pool, make_tenant: MakeTenant, new_request, register
) -> None:
    tenant = await make_tenant(duplicates="silent")
    user_name = unique("erin")
    first_email, second_email = f"{unique('e')}@example.com", f"{unique('f')}@example.com"
    first = await new_request(tenant, email=first_email, user_name=user_name)
    await register(first.event, first.data)
    second = await new_request(tenant, email=second_email, user_name=user_name.upper())
    await register(second.event, second.data)

    assert (await request_row(pool, second.data.request_id))["reason"] == "username_taken"
    assert await emails_of(pool, tenant) == [
        ("activation", first_email),
        ("username_taken", second_email),
    ]
    # The mailer renders from its own row: the name that was tried is in its params.
    params = await pool.fetchval(
        "SELECT params FROM emails WHERE tenant_id = $1 AND kind = 'username_taken'", tenant.id
    )
    assert params["user_name"] == user_name.upper()


async def test_silent_tenant_mails_the_owner_of_a_taken_email_not_a_user_name_notice(
    pool: asyncpg.Pool, make_tenant: MakeTenant, new_request, register
) -> None:
    tenant = await make_tenant(duplicates="silent")
    email = f"{unique('g')}@example.com"
    first = await new_request(tenant, email=email, user_name=unique("gus"))
    await register(first.event, first.data)
    second = await new_request(tenant, email=email, user_name=unique("hal"))
    await register(second.event, second.data)
    assert await emails_of(pool, tenant) == [("activation", email), ("duplicate", email)]


async def test_conflict_tenant_mails_nobody_about_a_taken_user_name(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register
) -> None:
    user_name = unique("ivy")
    first = await new_request(tenant, email=f"{unique('i')}@example.com", user_name=user_name)
    await register(first.event, first.data)
    second = await new_request(tenant, email=f"{unique('j')}@example.com", user_name=user_name)
    await register(second.event, second.data)
    assert [kind for kind, _ in await emails_of(pool, tenant)] == ["activation"]


async def test_resends_within_the_interval_mail_once_after_the_registration(
    pool: asyncpg.Pool, tenant: Tenant, new_request, register, token_key: bytes
) -> None:
    email = f"{unique('kim')}@example.com"
    req = await new_request(tenant, email=email, user_name=unique("kim"))
    await register(req.event, req.data)
    resend = partial(
        activation.resend_activation,
        pool=pool,
        token_key=token_key,
        ttl=TOKEN_TTL,
        interval=dt.timedelta(seconds=60),
    )
    command = ActivationResendRequested(tenant_id=tenant.id, email=email.upper())
    # Ten at once, as a client hammering the endpoint would send them.
    await asyncio.gather(*(resend(envelope(command), command) for _ in range(10)))

    assert await emails_of(pool, tenant) == [("activation", email)] * 2
    live = await pool.fetchval(
        "SELECT count(*) FROM activation_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE u.tenant_id = $1 AND t.revoked_at IS NULL",
        tenant.id,
    )
    assert live == 1  # the throttled resends did not revoke the link that was mailed

    # Once the interval has passed, the next resend mails again.
    await resend(envelope(command), command, interval=dt.timedelta(0))
    assert len(await emails_of(pool, tenant)) == 3


async def test_the_resend_throttle_is_per_kind_of_mail(
    pool: asyncpg.Pool, make_tenant: MakeTenant, new_request, register, token_key: bytes
) -> None:
    tenant = await make_tenant(duplicates="silent")
    email = f"{unique('lea')}@example.com"
    req = await new_request(tenant, email=email, user_name=unique("lea"))
    await register(req.event, req.data)
    again = await new_request(tenant, email=email, user_name=unique("leb"))
    await register(again.event, again.data)  # a "duplicate" notice, another kind
    command = ActivationResendRequested(tenant_id=tenant.id, email=email)
    await activation.resend_activation(
        envelope(command), command, pool=pool, token_key=token_key, ttl=TOKEN_TTL
    )
    assert [kind for kind, _ in await emails_of(pool, tenant)] == [
        "activation",
        "duplicate",
        "activation",
    ]


async def test_after_a_key_rotation_the_worker_registers_requests_sealed_to_either_key(
    pool: asyncpg.Pool,
    tenant: Tenant,
    new_request,
    hasher: PasswordHasher,
    private_key: str,
    token_key: bytes,
    settings,
) -> None:
    """Requests still queued from before the rotation (old key) and new ones (new key)."""
    new_public, new_private = generate_key_pair()
    register_rotated = partial(
        registration.register_user,
        pool=pool,
        hasher=hasher,
        private_key=f"{new_private},{private_key}",  # newest first
        token_key=token_key,
        token_ttl=TOKEN_TTL,
    )
    for public in (settings.seal_public_key, new_public):
        req = await new_request(
            tenant,
            email=f"{unique('rot')}@example.com",
            user_name=unique("rot"),
            sealed_password=seal("rotation password", public),
        )
        await register_rotated(req.event, req.data)
        assert (await request_row(pool, req.data.request_id))["status"] == "registered"

    stranger_public, _ = generate_key_pair()
    req = await new_request(
        tenant,
        email=f"{unique('rot')}@example.com",
        user_name=unique("rot"),
        sealed_password=seal("rotation password", stranger_public),
    )
    await register_rotated(req.event, req.data)
    row = await request_row(pool, req.data.request_id)
    assert (row["status"], row["reason"]) == ("rejected", "invalid_request")
