"""The invitation worker's handlers, and the invitation / access-token lookups the gateway
uses, against real PostgreSQL (no broker in between)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from functools import partial

import asyncpg
import pytest
from argon2 import PasswordHasher

from schemas.events import (
    CloudEvent,
    InvitationAcceptRequested,
    InviteRequested,
    envelope,
)
from service import invitations, tenants, tokens
from service.errors import PermanentError
from service.invitations import Decision
from service.sealing import derive_secret, generate_key_pair, seal
from service.settings import Settings
from service.tenants import Tenant
from tests.integration.conftest import MakeTenant
from workers.invitation import accept_invitation, invite_user

TTL = dt.timedelta(days=7)
PASSWORD = "invited and happy"


@dataclass(frozen=True)
class Invited:
    """An invite_user call that went through: its event, data, invitation row and token."""

    event: CloudEvent
    data: InviteRequested
    invitation: asyncpg.Record
    token: str


def unique_email(prefix: str = "invitee") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture(scope="session")
def invitation_key(private_key: str) -> bytes:
    """The workers' invitation-token secret, derived as cli/workers.py does."""
    return derive_secret(private_key, "invitation-token")


@pytest.fixture
def invite(pool: asyncpg.Pool, invitation_key: bytes):
    """invite_user wired the way cli/workers.py wires it."""
    return partial(invite_user, pool=pool, token_key=invitation_key, ttl=TTL)


@pytest.fixture
def accept(pool: asyncpg.Pool, hasher: PasswordHasher, private_key: str):
    """accept_invitation wired the way cli/workers.py wires it."""
    return partial(accept_invitation, pool=pool, hasher=hasher, private_key=private_key)


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


@pytest.fixture
def invited(pool: asyncpg.Pool, invite, invitation_key: bytes):
    """Invites an address and returns what the worker stored."""

    async def make(tenant: Tenant, *, email: str | None = None, **fields: object) -> Invited:
        fields.setdefault("locale", "de_AT")
        data = InviteRequested(
            request_id=uuid.uuid4(), tenant_id=tenant.id, email=email or unique_email(), **fields
        )
        event = envelope(data)
        await invite(event, data)
        row = await pool.fetchrow(
            "SELECT * FROM invitations WHERE request_id = $1", data.request_id
        )
        assert row is not None, "no invitation was created"
        return Invited(event, data, row, tokens.derive_token(invitation_key, row["id"]))

    return make


def accept_command(
    invitation: asyncpg.Record,
    settings: Settings,
    *,
    name: str = "Bob Invitee",
    password: str = PASSWORD,
    tenant_id: uuid.UUID | None = None,
) -> tuple[CloudEvent, InvitationAcceptRequested]:
    data = InvitationAcceptRequested(
        invitation_id=invitation["id"],
        tenant_id=tenant_id or invitation["tenant_id"],
        name=name,
        sealed_password=seal(password, settings.seal_public_key),
    )
    return envelope(data), data


async def insert_user(pool: asyncpg.Pool, tenant: Tenant, email: str) -> uuid.UUID:
    """A user who registered themselves (the invitation worker only reads users)."""
    user_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO users (id, tenant_id, user_name, email, password_hash, locale, source) "
        "VALUES ($1, $2, $3, $4, 'x', 'en', 'self')",
        user_id,
        tenant.id,
        f"self-{user_id.hex[:10]}",
        email,
    )
    return user_id


async def add_role(pool: asyncpg.Pool, tenant: Tenant, name: str) -> uuid.UUID:
    """The tenant's role `name`, added when missing (Admin, Staff and User exist from the
    start, migration 0013)."""
    return await pool.fetchval(
        "INSERT INTO roles (id, tenant_id, name, number) "
        "SELECT $1, $2, $3, max(number) + 1 FROM roles WHERE tenant_id = $2 "
        "ON CONFLICT (tenant_id, lower(name)) DO UPDATE SET name = roles.name RETURNING id",
        uuid.uuid4(),
        tenant.id,
        name,
    )


async def outbox(pool: asyncpg.Pool, routing_key: str, **data: str) -> list[dict]:
    """Outbox bodies under `routing_key` whose data has these (camelCase) values."""
    rows = await pool.fetch(
        "SELECT body FROM outbox WHERE routing_key = $1 AND body->'data' @> $2::jsonb ORDER BY id",
        routing_key,
        data,
    )
    return [r["body"] for r in rows]


async def outbox_text_for_tenant(pool: asyncpg.Pool, tenant: Tenant) -> str:
    rows = await pool.fetch(
        "SELECT body::text AS body FROM outbox WHERE body->'data'->>'tenantId' = $1",
        str(tenant.id),
    )
    return "\n".join(r["body"] for r in rows)


async def users_with_email(pool: asyncpg.Pool, tenant: Tenant, email: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)", tenant.id, email
    )


async def role_names(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id "
        "WHERE ur.user_id = $1 ORDER BY r.name",
        user_id,
    )
    return [r["name"] for r in rows]


# --- invite_user -----------------------------------------------------------------------


async def test_invite_creates_a_pending_invitation_storing_only_the_hash_of_the_derived_token(
    pool: asyncpg.Pool, tenant: Tenant, invited, invitation_key: bytes
) -> None:
    before = dt.datetime.now(dt.UTC)
    result = await invited(tenant, name="Bob")
    row = result.invitation

    expected = hashlib.sha256(tokens.derive_token(invitation_key, row["id"]).encode()).digest()
    assert bytes(row["token_hash"]) == expected
    assert (row["status"], row["tenant_id"], row["email"]) == (
        "pending",
        tenant.id,
        result.data.email,
    )
    assert (row["locale"], row["name"], row["role_id"]) == ("de_AT", "Bob", None)
    assert (row["decided_by"], row["decision"], row["user_id"], row["accepted_at"]) == (
        None,
        None,
        None,
        None,
    )
    assert before + TTL - dt.timedelta(minutes=1) < row["expires_at"]
    assert row["expires_at"] < dt.datetime.now(dt.UTC) + TTL + dt.timedelta(minutes=1)


async def test_invite_records_the_email_and_its_outbox_events_without_the_token(
    pool: asyncpg.Pool, tenant: Tenant, invited
) -> None:
    result = await invited(tenant, name="Bob")
    invitation_id = str(result.invitation["id"])
    expires_at = result.invitation["expires_at"]

    [email] = await pool.fetch("SELECT * FROM emails WHERE recipient = $1", result.data.email)
    assert (email["tenant_id"], email["kind"], email["status"]) == (
        tenant.id,
        "invitation",
        "pending",
    )

    [sent] = await outbox(pool, "invitation.sent", invitationId=invitation_id)
    assert sent["type"] == "registrar.invitation.sent.v1"
    assert sent["subject"] == invitation_id
    assert sent["data"] == {
        "invitationId": invitation_id,
        "tenantId": str(tenant.id),
        "email": result.data.email,
        "locale": "de_AT",
        "expiresAt": sent["data"]["expiresAt"],
    }
    assert dt.datetime.fromisoformat(sent["data"]["expiresAt"]) == expires_at

    # The command names the row; the row holds what the mailer renders (SPEC §5).
    [requested] = await outbox(pool, "email.requested", emailId=str(email["id"]))
    assert requested["data"] == {"emailId": str(email["id"]), "tenantId": str(tenant.id)}
    assert (email["recipient"], email["locale"]) == (result.data.email, "de_AT")
    assert email["params"] == {
        "user_name": "",
        "name": "Bob",
        "invitation_id": invitation_id,
        "expires_at": sent["data"]["expiresAt"],
    }

    everything = await outbox_text_for_tenant(pool, tenant)
    assert result.token not in everything
    assert bytes(result.invitation["token_hash"]).hex() not in everything


async def test_inviting_the_same_email_again_revokes_the_first_and_creates_a_new_pending_one(
    pool: asyncpg.Pool, tenant: Tenant, invited
) -> None:
    email = unique_email()
    first = await invited(tenant, email=email)

    second = await invited(tenant, email=email.upper().replace("@EXAMPLE.COM", "@example.com"))

    assert second.invitation["id"] != first.invitation["id"]
    assert second.token != first.token
    statuses = dict(
        await pool.fetch(
            "SELECT id, status FROM invitations WHERE tenant_id = $1 AND lower(email) = lower($2)",
            tenant.id,
            email,
        )
    )
    assert statuses == {first.invitation["id"]: "revoked", second.invitation["id"]: "pending"}
    old = await invitations.find_by_token(pool, first.token)
    assert old is not None and old.status == "revoked" and not old.usable
    assert await pool.fetchval("SELECT count(*) FROM emails WHERE recipient = $1", email) == 1
    assert (
        await pool.fetchval("SELECT count(*) FROM emails WHERE lower(recipient) = lower($1)", email)
        == 2
    )


async def test_the_same_email_may_be_invited_by_two_tenants_independently(
    pool: asyncpg.Pool, make_tenant: MakeTenant, invited
) -> None:
    email = unique_email()
    first = await invited(await make_tenant(), email=email)
    second = await invited(await make_tenant(), email=email)

    statuses = await pool.fetch(
        "SELECT status FROM invitations WHERE id = ANY($1::uuid[])",
        [first.invitation["id"], second.invitation["id"]],
    )
    assert [r["status"] for r in statuses] == ["pending", "pending"]


async def test_an_email_that_is_already_a_user_of_the_tenant_gets_no_invitation_and_no_events(
    pool: asyncpg.Pool, tenant: Tenant, invite
) -> None:
    email = unique_email("member")
    await insert_user(pool, tenant, email)
    data = InviteRequested(
        request_id=uuid.uuid4(), tenant_id=tenant.id, email=email.upper(), locale="en"
    )

    await invite(envelope(data), data)

    assert (
        await pool.fetchval(
            "SELECT count(*) FROM invitations WHERE request_id = $1", data.request_id
        )
        == 0
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM emails WHERE lower(recipient) = lower($1)", email)
        == 0
    )
    assert await outbox(pool, "invitation.sent", tenantId=str(tenant.id)) == []
    assert await outbox(pool, "email.requested", tenantId=str(tenant.id)) == []


async def test_a_user_of_another_tenant_is_still_invited(
    pool: asyncpg.Pool, make_tenant: MakeTenant, invited
) -> None:
    email = unique_email()
    await insert_user(pool, await make_tenant(), email)

    result = await invited(await make_tenant(), email=email)

    assert result.invitation["status"] == "pending"


async def test_the_same_request_id_published_again_with_a_new_event_id_is_a_no_op(
    pool: asyncpg.Pool, tenant: Tenant, invite
) -> None:
    data = InviteRequested(
        request_id=uuid.uuid4(), tenant_id=tenant.id, email=unique_email(), locale="en"
    )
    await invite(envelope(data), data)

    await invite(envelope(data), data)  # the gateway retried the publish

    [row] = await pool.fetch("SELECT * FROM invitations WHERE tenant_id = $1", tenant.id)
    assert row["status"] == "pending"
    assert await pool.fetchval("SELECT count(*) FROM emails WHERE tenant_id = $1", tenant.id) == 1
    assert len(await outbox(pool, "invitation.sent", tenantId=str(tenant.id))) == 1
    assert len(await outbox(pool, "email.requested", tenantId=str(tenant.id))) == 1


async def test_redelivery_of_the_same_invite_event_is_a_no_op(
    pool: asyncpg.Pool, tenant: Tenant, invite
) -> None:
    data = InviteRequested(
        request_id=uuid.uuid4(), tenant_id=tenant.id, email=unique_email(), locale="en"
    )
    event = envelope(data)
    await invite(event, data)

    await invite(event, data)

    assert (
        await pool.fetchval("SELECT count(*) FROM invitations WHERE tenant_id = $1", tenant.id) == 1
    )
    assert await pool.fetchval("SELECT count(*) FROM emails WHERE tenant_id = $1", tenant.id) == 1
    assert len(await outbox(pool, "invitation.sent", tenantId=str(tenant.id))) == 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM processed_messages WHERE consumer = 'invitation' "
            "AND message_id = $1",
            event.id,
        )
        == 1
    )


async def test_inviting_with_a_role_that_does_not_exist_is_a_permanent_error_and_leaves_nothing(
    pool: asyncpg.Pool, tenant: Tenant, invite
) -> None:
    email = unique_email()
    data = InviteRequested(
        request_id=uuid.uuid4(), tenant_id=tenant.id, email=email, locale="en", role_id=uuid.uuid4()
    )
    event = envelope(data)

    with pytest.raises(PermanentError):
        await invite(event, data)

    assert (
        await pool.fetchval("SELECT count(*) FROM invitations WHERE tenant_id = $1", tenant.id) == 0
    )
    assert await pool.fetchval("SELECT count(*) FROM emails WHERE tenant_id = $1", tenant.id) == 0
    assert await outbox(pool, "invitation.sent", tenantId=str(tenant.id)) == []
    assert not await pool.fetchval(
        "SELECT true FROM processed_messages WHERE message_id = $1", event.id
    )


# --- accept_invitation -----------------------------------------------------------------


async def test_accept_creates_an_approved_invitation_user_with_the_default_role(
    pool: asyncpg.Pool, settings: Settings, hasher: PasswordHasher, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant, name="Prefilled")
    event, data = accept_command(result.invitation, settings, name="Bob Invitee")

    await accept(event, data)

    [user] = await users_with_email(pool, tenant, result.data.email)
    assert (user["user_name"], user["email"], user["name"]) == (
        result.data.email,
        result.data.email,
        "Bob Invitee",
    )
    assert (user["is_approved"], user["source"], user["locale"]) == (True, "invitation", "de_AT")
    assert hasher.verify(user["password_hash"], PASSWORD)
    assert user["password_hash"].startswith("$argon2id$")
    assert await role_names(pool, user["id"]) == ["User"]

    row = await pool.fetchrow("SELECT * FROM invitations WHERE id = $1", result.invitation["id"])
    assert (row["status"], row["decision"], row["decided_by"], row["user_id"]) == (
        "accepted",
        "accepted",
        event.id,
        user["id"],
    )
    assert row["accepted_at"] is not None


async def test_accept_publishes_invitation_accepted_and_user_registered(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant)
    event, data = accept_command(result.invitation, settings, name="Bob Invitee")
    invitation_id = str(result.invitation["id"])

    await accept(event, data)

    [user] = await users_with_email(pool, tenant, result.data.email)
    [accepted] = await outbox(pool, "invitation.accepted", invitationId=invitation_id)
    assert accepted["type"] == "registrar.invitation.accepted.v1"
    assert accepted["subject"] == invitation_id
    assert accepted["data"] == {
        "invitationId": invitation_id,
        "tenantId": str(tenant.id),
        "userId": str(user["id"]),
    }
    [registered] = await outbox(pool, "user.registered", userId=str(user["id"]))
    assert registered["subject"] == str(user["id"])
    assert registered["data"] == {
        "userId": str(user["id"]),
        "tenantId": str(tenant.id),
        "email": result.data.email,
        "userName": result.data.email,
        "name": "Bob Invitee",
        "locale": "de_AT",
        "isApproved": True,
        "roles": ["User"],
        "source": "invitation",
        "registeredAt": registered["data"]["registeredAt"],
        "requestId": str(result.data.request_id),
    }
    assert dt.datetime.fromisoformat(registered["data"]["registeredAt"]) == user["created_at"]
    assert PASSWORD not in await outbox_text_for_tenant(pool, tenant)


async def test_accept_gives_the_user_the_role_of_the_invitation_instead_of_the_default(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    admin = await add_role(pool, tenant, "Admin")
    result = await invited(tenant, role_id=admin)
    assert result.invitation["role_id"] == admin

    await accept(*accept_command(result.invitation, settings))

    [user] = await users_with_email(pool, tenant, result.data.email)
    assert await role_names(pool, user["id"]) == ["Admin"]
    [registered] = await outbox(pool, "user.registered", userId=str(user["id"]))
    assert registered["data"]["roles"] == ["Admin"]


async def test_an_invitation_whose_role_was_deleted_falls_back_to_the_default_role(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    temporary = await add_role(pool, tenant, "Temporary")
    result = await invited(tenant, role_id=temporary)
    await pool.execute("DELETE FROM roles WHERE id = $1", temporary)

    await accept(*accept_command(result.invitation, settings))

    [user] = await users_with_email(pool, tenant, result.data.email)
    assert await role_names(pool, user["id"]) == ["User"]


async def test_a_second_accept_command_for_the_same_invitation_does_nothing(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant)
    first_event, first = accept_command(result.invitation, settings, name="First")
    second_event, second = accept_command(
        result.invitation, settings, name="Second", password="another password"
    )
    await accept(first_event, first)

    await accept(second_event, second)

    [user] = await users_with_email(pool, tenant, result.data.email)
    assert user["name"] == "First"
    row = await pool.fetchrow("SELECT * FROM invitations WHERE id = $1", result.invitation["id"])
    assert (row["status"], row["decided_by"]) == ("accepted", first_event.id)
    invitation_id = str(result.invitation["id"])
    assert len(await outbox(pool, "invitation.accepted", invitationId=invitation_id)) == 1
    assert len(await outbox(pool, "user.registered", tenantId=str(tenant.id))) == 1

    decided = partial(invitations.decision_for, pool, result.invitation["id"])
    assert await decided(first_event.id) == Decision(True, "accepted", user["id"])
    assert await decided(second_event.id) == Decision(False, "accepted", user["id"])


async def test_redelivery_of_the_same_accept_command_does_nothing(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant)
    event, data = accept_command(result.invitation, settings)
    await accept(event, data)

    await accept(event, data)

    assert len(await users_with_email(pool, tenant, result.data.email)) == 1
    assert len(await outbox(pool, "user.registered", tenantId=str(tenant.id))) == 1


async def test_an_expired_invitation_creates_no_user(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant)
    await pool.execute(
        "UPDATE invitations SET expires_at = now() - interval '1 minute' WHERE id = $1",
        result.invitation["id"],
    )
    event, data = accept_command(result.invitation, settings)

    await accept(event, data)

    assert await users_with_email(pool, tenant, result.data.email) == []
    row = await pool.fetchrow("SELECT * FROM invitations WHERE id = $1", result.invitation["id"])
    # Still pending (it simply expired), but marked as seen by this command, so the waiting
    # gateway can answer "gone" at once instead of waiting out its timeout.
    assert (row["status"], row["decision"], row["user_id"]) == ("pending", None, None)
    assert row["decided_by"] == event.id
    assert await outbox(pool, "invitation.accepted", tenantId=str(tenant.id)) == []
    assert await outbox(pool, "user.registered", tenantId=str(tenant.id)) == []
    found = await invitations.find_by_token(pool, result.token)
    assert found is not None and not found.usable


async def test_a_revoked_invitation_creates_no_user(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    email = unique_email()
    older = await invited(tenant, email=email)
    await invited(tenant, email=email)

    await accept(*accept_command(older.invitation, settings))

    assert await users_with_email(pool, tenant, email) == []
    status = await pool.fetchval(
        "SELECT status FROM invitations WHERE id = $1", older.invitation["id"]
    )
    assert status == "revoked"


async def test_an_accept_command_naming_another_tenant_creates_no_user(
    pool: asyncpg.Pool, settings: Settings, make_tenant: MakeTenant, invited, accept
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    result = await invited(tenant)

    await accept(*accept_command(result.invitation, settings, tenant_id=other.id))

    assert await users_with_email(pool, tenant, result.data.email) == []
    assert await users_with_email(pool, other, result.data.email) == []
    status = await pool.fetchval(
        "SELECT status FROM invitations WHERE id = $1", result.invitation["id"]
    )
    assert status == "pending"


async def test_accepting_when_the_email_already_belongs_to_a_user_decides_email_taken(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant)
    existing = await insert_user(pool, tenant, result.data.email)
    event, data = accept_command(result.invitation, settings)

    await accept(event, data)

    [user] = await users_with_email(pool, tenant, result.data.email)
    assert user["id"] == existing
    row = await pool.fetchrow("SELECT * FROM invitations WHERE id = $1", result.invitation["id"])
    assert (row["status"], row["decision"], row["decided_by"], row["user_id"]) == (
        "revoked",
        "email_taken",
        event.id,
        None,
    )
    assert await outbox(pool, "invitation.accepted", tenantId=str(tenant.id)) == []
    assert await outbox(pool, "user.registered", tenantId=str(tenant.id)) == []
    assert await invitations.decision_for(pool, row["id"], event.id) == Decision(
        True, "email_taken", None
    )


async def test_a_password_sealed_for_another_key_is_a_permanent_error_and_changes_nothing(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant)
    stranger_public, _ = generate_key_pair()
    data = InvitationAcceptRequested(
        invitation_id=result.invitation["id"],
        tenant_id=tenant.id,
        name="Mallory",
        sealed_password=seal(PASSWORD, stranger_public),
    )

    with pytest.raises(PermanentError):
        await accept(envelope(data), data)

    assert await users_with_email(pool, tenant, result.data.email) == []
    status = await pool.fetchval(
        "SELECT status FROM invitations WHERE id = $1", result.invitation["id"]
    )
    assert status == "pending"


# --- service.invitations ---------------------------------------------------------------


async def test_find_by_token_returns_the_invitation_with_its_tenant(
    pool: asyncpg.Pool, make_tenant: MakeTenant, invited
) -> None:
    tenant = await make_tenant(default_locale="de")
    result = await invited(tenant, name="Bob")

    found = await invitations.find_by_token(pool, result.token)

    assert found is not None
    assert (found.id, found.tenant_id, found.organization, found.default_locale) == (
        result.invitation["id"],
        tenant.id,
        tenant.name,
        "de",
    )
    assert (found.email, found.locale, found.name, found.status) == (
        result.data.email,
        "de_AT",
        "Bob",
        "pending",
    )
    assert found.expires_at == result.invitation["expires_at"]
    assert found.usable


async def test_find_by_token_knows_no_unknown_or_altered_token(
    pool: asyncpg.Pool, tenant: Tenant, invited
) -> None:
    result = await invited(tenant)

    assert await invitations.find_by_token(pool, tokens.new_secret()) is None
    assert await invitations.find_by_token(pool, result.token[:-1]) is None
    assert await invitations.find_by_token(pool, str(result.invitation["id"])) is None


async def test_find_by_token_of_an_accepted_invitation_is_not_usable(
    pool: asyncpg.Pool, settings: Settings, tenant: Tenant, invited, accept
) -> None:
    result = await invited(tenant)
    await accept(*accept_command(result.invitation, settings))

    found = await invitations.find_by_token(pool, result.token)

    assert found is not None
    assert found.status == "accepted"
    assert not found.usable


async def test_decision_for_is_none_while_the_invitation_is_pending(
    pool: asyncpg.Pool, tenant: Tenant, invited
) -> None:
    result = await invited(tenant)

    assert await invitations.decision_for(pool, result.invitation["id"], uuid.uuid4()) is None


async def test_decision_for_an_unknown_invitation_is_decided_by_nobody(
    pool: asyncpg.Pool,
) -> None:
    decision = await invitations.decision_for(pool, uuid.uuid4(), uuid.uuid4())

    assert decision == Decision(mine=False, decision=None, user_id=None)


async def test_decision_for_a_revoked_invitation_is_not_mine(
    pool: asyncpg.Pool, tenant: Tenant, invited
) -> None:
    email = unique_email()
    older = await invited(tenant, email=email)
    await invited(tenant, email=email)

    decision = await invitations.decision_for(pool, older.invitation["id"], uuid.uuid4())

    assert decision == Decision(mine=False, decision=None, user_id=None)


# --- service.tenants: bearer tokens and roles ------------------------------------------


async def test_find_access_token_returns_the_token_its_tenant_and_scopes(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    token_id, token = await tenants.create_access_token(
        pool, tenant_id=tenant.id, scopes=["users:invite", "users:read"]
    )

    found = await tenants.find_access_token(pool, token)

    assert found is not None
    assert found.id == token_id
    assert found.tenant == tenant
    assert found.scopes == frozenset({"users:invite", "users:read"})


async def test_an_access_token_is_stored_only_as_its_hash(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    token_id, token = await tenants.create_access_token(pool, tenant_id=tenant.id, scopes=[])

    row = await pool.fetchrow("SELECT * FROM access_tokens WHERE id = $1", token_id)

    assert bytes(row["token_hash"]) == hashlib.sha256(token.encode()).digest()
    assert token not in str(dict(row))
    found = await tenants.find_access_token(pool, token)
    assert found is not None and found.scopes == frozenset()


async def test_find_access_token_knows_no_unknown_token(pool: asyncpg.Pool) -> None:
    assert await tenants.find_access_token(pool, tokens.new_secret()) is None


async def test_a_revoked_access_token_is_not_found_and_revoking_twice_reports_false(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    token_id, token = await tenants.create_access_token(
        pool, tenant_id=tenant.id, scopes=["users:invite"]
    )
    other_id, other = await tenants.create_access_token(
        pool, tenant_id=tenant.id, scopes=["users:invite"]
    )

    assert await tenants.revoke_access_token(pool, token_id) is True

    assert await tenants.find_access_token(pool, token) is None
    assert await tenants.revoke_access_token(pool, token_id) is False
    found = await tenants.find_access_token(pool, other)
    assert found is not None and found.id == other_id


async def test_revoking_an_unknown_access_token_reports_false(pool: asyncpg.Pool) -> None:
    assert await tenants.revoke_access_token(pool, uuid.uuid4()) is False


async def test_access_tokens_of_a_tenant_whose_api_key_was_revoked_are_not_found(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    _, token = await tenants.create_access_token(pool, tenant_id=tenant.id, scopes=["users:invite"])
    await pool.execute("UPDATE tenants SET api_key_revoked_at = now() WHERE id = $1", tenant.id)

    assert await tenants.find_access_token(pool, token) is None


async def test_role_exists_only_for_roles_of_the_same_tenant(
    pool: asyncpg.Pool, make_tenant: MakeTenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    role = await add_role(pool, tenant, "Admin")

    assert await tenants.role_exists(pool, tenant_id=tenant.id, role_id=role)
    assert not await tenants.role_exists(pool, tenant_id=other.id, role_id=role)
    assert not await tenants.role_exists(pool, tenant_id=tenant.id, role_id=uuid.uuid4())
