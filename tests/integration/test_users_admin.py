"""The back office's service layer against real PostgreSQL: counters kept by triggers,
pages that agree with a plain ORDER BY from either end, changes with their events in the
same transaction, roles, and users an administrator creates through the registration
worker (what the administrator chose is read from the request row)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import uuid

import asyncpg
import pytest

from schemas.users_admin import UserUpdate
from service import roles, sessions, user_admin, user_listing
from service.errors import EmailTaken, NotFound, UserNameTaken, ValidationFailed
from service.paging import PageRequest
from service.tenants import Tenant
from tests.integration.conftest import ACTIVATION_URL, MakeTenant


async def add_users(pool: asyncpg.Pool, tenant: Tenant, people: list[dict]) -> list[uuid.UUID]:
    """Users as rows (what registration leaves), with the `User` role."""
    ids = []
    for person in people:
        user_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO users (id, tenant_id, user_name, email, name, password_hash, locale, "
            "is_approved, is_locked_out, source, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, 'x', 'en', $6, $7, 'self', $8, $8)",
            user_id,
            tenant.id,
            person["user_name"],
            person["email"],
            person.get("name", ""),
            person.get("approved", False),
            person.get("locked", False),
            person.get("created", dt.datetime.now(dt.UTC)),
        )
        await pool.execute(
            "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles "
            "WHERE tenant_id = $2 AND name = 'User'",
            user_id,
            tenant.id,
        )
        ids.append(user_id)
    return ids


async def counters(pool: asyncpg.Pool, tenant: Tenant) -> tuple:
    row = await pool.fetchrow(user_listing.COUNTS, tenant.id)
    return tuple(row.values())


async def counted_by_hand(pool: asyncpg.Pool, tenant: Tenant) -> tuple:
    row = await pool.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE is_approved), "
        "count(*) FILTER (WHERE is_locked_out), "
        "count(*) FILTER (WHERE is_approved AND is_locked_out) FROM users WHERE tenant_id = $1",
        tenant.id,
    )
    return tuple(row.values())


async def outbox_about(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT routing_key, body FROM outbox WHERE body->>'subject' = $1 ORDER BY id",
        str(user_id),
    )


def person(n: int, **more) -> dict:
    tag = uuid.uuid4().hex[:6]
    return {"user_name": f"p{n:03d}_{tag}", "email": f"p{n:03d}.{tag}@example.com"} | more


async def test_counters_follow_every_change_also_concurrent_ones(
    pool: asyncpg.Pool, make_tenant: MakeTenant
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    await add_users(pool, other, [person(0)])
    rng = random.Random(3)
    people = [person(n, approved=rng.random() < 0.5, locked=rng.random() < 0.2) for n in range(40)]
    # Ten transactions at once, four users each.
    await asyncio.gather(*(add_users(pool, tenant, people[i::10]) for i in range(10)))
    assert await counters(pool, tenant) == await counted_by_hand(pool, tenant)
    await pool.execute(
        "UPDATE users SET is_approved = NOT is_approved WHERE tenant_id = $1 AND is_locked_out",
        tenant.id,
    )
    await pool.execute(
        "UPDATE users SET is_locked_out = true, last_login_at = now() "
        "WHERE tenant_id = $1 AND user_name LIKE 'p00%'",
        tenant.id,
    )
    await pool.execute("UPDATE users SET name = 'renamed' WHERE tenant_id = $1", tenant.id)
    await pool.execute(
        "DELETE FROM users WHERE tenant_id = $1 AND user_name LIKE 'p01%'", tenant.id
    )
    assert await counters(pool, tenant) == await counted_by_hand(pool, tenant)
    assert (await counters(pool, other))[0] == 1
    # A change that touches no counted column writes no counter.
    rows = await pool.fetchval("SELECT count(*) FROM user_counts WHERE tenant_id = $1", tenant.id)
    await pool.execute("UPDATE users SET last_login_at = now() WHERE tenant_id = $1", tenant.id)
    assert (
        await pool.fetchval("SELECT count(*) FROM user_counts WHERE tenant_id = $1", tenant.id)
        == rows
    )


@pytest.fixture
async def crowd(pool: asyncpg.Pool, make_tenant: MakeTenant) -> tuple[Tenant, list[dict]]:
    """23 users: mixed approval and locks, creation times with ties, names to search."""
    tenant = await make_tenant()
    rng = random.Random(11)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    people = [
        person(
            n,
            name=rng.choice(["Ada Lovelace", "Alan Turing", ""]),
            approved=rng.random() < 0.6,
            locked=rng.random() < 0.3,
            created=base + dt.timedelta(minutes=rng.randrange(6)),  # ties: the id decides
        )
        for n in range(23)
    ]
    rng.shuffle(people)
    ids = await add_users(pool, tenant, people)
    return tenant, [p | {"id": i} for p, i in zip(people, ids, strict=True)]


async def plain_order(pool: asyncpg.Pool, tenant: Tenant, asked: PageRequest) -> list[uuid.UUID]:
    """What the whole list is, sorted and filtered the slow obvious way."""
    where, args = user_listing._conditions(asked)
    keys = user_listing.SORTS[asked.sort]
    direction = " DESC" if asked.descending else ""
    order = ", ".join(key + direction for key in keys)
    rows = await pool.fetch(
        f"SELECT u.id FROM users u WHERE {where} ORDER BY {order}", tenant.id, *args
    )
    return [r["id"] for r in rows]


async def test_pages_put_together_are_the_plainly_sorted_list(pool, crowd) -> None:
    tenant, _ = crowd
    for sort, descending, rpp, filters, search in itertools.product(
        user_listing.SORTS,
        (False, True),
        (1, 4, 23),
        ({}, {"isApproved": True}, {"isApproved": False, "isLocked": True}),
        (None, "lovelace"),
    ):
        asked = PageRequest(
            sort=sort, descending=descending, rpp=rpp, filters=filters, search=search
        )
        expected = await plain_order(pool, tenant, asked)
        found, page = [], 1
        while True:
            items, total = await user_listing.list_users(
                pool,
                tenant_id=tenant.id,
                request=PageRequest(
                    page=page,
                    rpp=rpp,
                    sort=sort,
                    descending=descending,
                    filters=filters,
                    search=search,
                ),
                links_of=lambda _id: {},
            )
            assert total == len(expected)
            if not items:
                break
            found += [u.id for u in items]
            page += 1
        assert found == expected, (sort, descending, rpp, filters, search)


async def test_a_search_matches_within_one_field_never_across_two(pool, make_tenant) -> None:
    tenant = await make_tenant()
    await add_users(pool, tenant, [{"user_name": "abc", "email": "def@x.test", "name": "Ghi Jkl"}])

    async def hits(phrase: str) -> int:
        _, total = await user_listing.list_users(
            pool,
            tenant_id=tenant.id,
            request=PageRequest(sort="userName", search=phrase),
            links_of=lambda _id: {},
        )
        return total

    assert [await hits(p) for p in ("ABC", "def@x", "hi jk", "x.test")] == [1, 1, 1, 1]
    assert [await hits(p) for p in ("abcdef", "test ghi", "abc def")] == [0, 0, 0]


async def test_updates_change_what_is_given_and_report_it_in_the_same_transaction(
    pool, make_tenant
) -> None:
    tenant = await make_tenant()
    first, second = await add_users(pool, tenant, [person(1), person(2)])
    form = UserUpdate.model_validate({"name": " Ada ", "roles": ["staff", "User"]})
    changed = await user_admin.update_user(pool, tenant_id=tenant.id, user=str(first), form=form)
    assert changed == ["name", "roles"]
    [event] = await outbox_about(pool, first)
    assert event["routing_key"] == "user.updated"
    assert event["body"]["data"]["changed"] == ["name", "roles"]
    # The same again changes nothing and reports nothing.
    assert await user_admin.update_user(pool, tenant_id=tenant.id, user=str(first), form=form) == []
    assert len(await outbox_about(pool, first)) == 1

    taken = await pool.fetchrow("SELECT user_name, email FROM users WHERE id = $1", first)
    for body, error in (({"email": taken["email"].upper()}, EmailTaken),
                        ({"userName": taken["user_name"].upper()}, UserNameTaken),
                        ({"roles": ["Nobody"]}, ValidationFailed)):  # fmt: skip
        with pytest.raises(error):
            await user_admin.update_user(
                pool, tenant_id=tenant.id, user=str(second), form=UserUpdate.model_validate(body)
            )
    assert await outbox_about(pool, second) == []
    with pytest.raises(NotFound):
        await user_admin.delete_user(pool, tenant_id=tenant.id, user="nobody")
    other = await make_tenant()
    with pytest.raises(NotFound):  # another tenant's user is nobody here
        await user_admin.lock(pool, tenant_id=other.id, user=str(first))


async def test_lock_ends_sessions_and_unlock_also_lifts_a_lock_out(pool, make_tenant) -> None:
    tenant = await make_tenant()
    [user] = await add_users(pool, tenant, [person(1, approved=True)])
    grant = await sessions.open_session(
        pool, tenant_id=tenant.id, user_id=user, ttl=dt.timedelta(hours=1), sliding=False
    )
    await user_admin.lock(pool, tenant_id=tenant.id, user=str(user))
    await user_admin.lock(pool, tenant_id=tenant.id, user=str(user))  # already: nothing
    await user_admin.unlock(pool, tenant_id=tenant.id, user=str(user))
    # The session ended with the lock, not just while it lasted.
    assert await sessions.use_session(pool, tenant_id=tenant.id, token=grant.access_token) is None

    await pool.execute(
        "UPDATE users SET locked_until = now() + interval '1 hour', failed_logins = 3, "
        "first_failed_login_at = now() WHERE id = $1",
        user,
    )
    await user_admin.unlock(pool, tenant_id=tenant.id, user=str(user))
    await user_admin.unlock(pool, tenant_id=tenant.id, user=str(user))  # not locked: nothing
    row = await pool.fetchrow("SELECT * FROM users WHERE id = $1", user)
    assert (row["locked_until"], row["failed_logins"], row["first_failed_login_at"]) == (
        None,
        0,
        None,
    )
    events = [
        (e["routing_key"], e["body"]["data"].get("reason")) for e in await outbox_about(pool, user)
    ]
    assert events == [("user.locked", "admin"), ("user.unlocked", None), ("user.unlocked", None)]


async def test_roles_are_numbered_after_the_tenants_others_and_held_ones_stay(
    pool, make_tenant
) -> None:
    tenant = await make_tenant()
    made = await asyncio.gather(
        *(
            roles.create_role(pool, tenant_id=tenant.id, name=f"R{n}", description="")
            for n in range(5)
        )
    )
    assert sorted(r["number"] for r in made) == [4, 5, 6, 7, 8]
    with pytest.raises(roles.RoleTaken):
        await roles.create_role(pool, tenant_id=tenant.id, name="r1", description="")
    [user] = await add_users(pool, tenant, [person(1)])
    await user_admin.update_user(
        pool, tenant_id=tenant.id, user=str(user), form=UserUpdate.model_validate({"roles": ["R0"]})
    )
    held = next(r for r in made if r["name"] == "R0")
    with pytest.raises(roles.RoleInUse):
        await roles.delete_role(pool, tenant_id=tenant.id, role_id=held["id"])
    user_role = await pool.fetchval(
        "SELECT id FROM roles WHERE tenant_id = $1 AND name = 'User'", tenant.id
    )
    with pytest.raises(roles.RolePredefined):
        await roles.delete_role(pool, tenant_id=tenant.id, role_id=user_role)
    with pytest.raises(roles.RolePredefined):
        await roles.update_role(
            pool, tenant_id=tenant.id, role_id=user_role, name="Member", description=None
        )
    other = await make_tenant()
    with pytest.raises(NotFound):
        await roles.delete_role(pool, tenant_id=other.id, role_id=held["id"])


# --- users created by an administrator, through the registration worker ------------------


async def admin_request(pool, new_request, tenant: Tenant, *, activation_url=None, **admin):
    """A request recorded as the gateway records POST /users."""
    tag = uuid.uuid4().hex[:8]
    req = await new_request(tenant, email=f"a-{tag}@example.com", user_name=f"a_{tag}")
    choice = {"name": "Ada", "roles": ["staff"], "isApproved": False, "notify": False} | admin
    await pool.execute(
        "UPDATE registration_requests SET admin = $2 WHERE id = $1", req.data.request_id, choice
    )
    data = req.data.model_copy(update={"activation_url": activation_url})
    return req.event, data


async def test_the_worker_creates_what_the_administrator_chose(
    pool, make_tenant, new_request, register
) -> None:
    tenant = await make_tenant()
    event, data = await admin_request(pool, new_request, tenant, isApproved=True)
    await register(event, data)
    user = await pool.fetchrow("SELECT * FROM users WHERE email = $1", data.email)
    assert (user["source"], user["name"], user["is_approved"]) == ("admin", "Ada", True)
    role_names = await pool.fetch(
        "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE user_id = $1",
        user["id"],
    )
    assert [r["name"] for r in role_names] == ["Staff"]
    [registered] = await outbox_about(pool, user["id"])
    assert registered["routing_key"] == "user.registered"
    expected = {"source": "admin", "roles": ["Staff"], "isApproved": True, "name": "Ada"}
    assert expected.items() <= registered["body"]["data"].items()
    # No mail unless asked for, no activation token either.
    assert not await pool.fetchval("SELECT count(*) FROM emails WHERE recipient = $1", data.email)
    assert not await pool.fetchval(
        "SELECT count(*) FROM activation_tokens WHERE user_id = $1", user["id"]
    )
    request = await pool.fetchrow(
        "SELECT status, user_id FROM registration_requests WHERE id = $1", data.request_id
    )
    assert tuple(request.values()) == ("registered", user["id"])


@pytest.mark.parametrize(
    ("approved", "activation_url", "kind"),
    [(False, ACTIVATION_URL, "activation"), (True, None, "welcome")],
)
async def test_asked_to_notify_the_worker_mails_a_link_or_a_welcome(
    pool, make_tenant, new_request, register, approved, activation_url, kind
) -> None:
    tenant = await make_tenant()
    event, data = await admin_request(
        pool, new_request, tenant, activation_url=activation_url, isApproved=approved, notify=True
    )
    await register(event, data)
    [email] = await pool.fetch("SELECT kind FROM emails WHERE recipient = $1", data.email)
    assert email["kind"] == kind
    tokens = await pool.fetchval(
        "SELECT count(*) FROM activation_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE u.email = $1",
        data.email,
    )
    assert tokens == (0 if approved else 1)


async def test_a_taken_address_is_a_plain_rejection_even_for_a_silent_tenant(
    pool, make_tenant, new_request, register
) -> None:
    tenant = await make_tenant(duplicates="silent")
    event, data = await admin_request(pool, new_request, tenant)
    await register(event, data)
    again_event, again = await admin_request(pool, new_request, tenant)
    again = again.model_copy(update={"email": data.email.upper()})
    await register(again_event, again)
    row = await pool.fetchrow(
        "SELECT status, reason FROM registration_requests WHERE id = $1", again.request_id
    )
    assert tuple(row.values()) == ("rejected", "email_taken")
    # The owner is not mailed "someone tried to register": an administrator got a 409.
    assert not await pool.fetchval(
        "SELECT count(*) FROM emails WHERE lower(recipient) = lower($1)", data.email
    )
