"""Organization users, Blynk-shaped (SPEC §11), end to end against the real gateway and
workers: list, search, get, create (an invitation without a password), change role;
integer ids, statuses, tenant bearer tokens and Blynk's error body."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import asyncpg
import pytest

from tests.e2e.conftest import next_event
from tests.e2e.test_invitations import invitation_token
from tests.e2e.test_self_registration import activation_token_in, new_body, register_url

pytestmark = pytest.mark.e2e
ORG = "/api/v1/organization"
LIST, SEARCH, USER = f"{ORG}/users", f"{ORG}/search/users", f"{ORG}/user"
CREATE, ROLE = f"{ORG}/users/create", f"{ORG}/users/role"
SUMMARY_FIELDS = {"id", "name", "email", "roleId", "orgId", "status"}
FULL_FIELDS = SUMMARY_FIELDS | {"locale", "registeredAt", "lastLoggedAt", "lastModifiedTs"}
NOW = dt.datetime.now(dt.UTC)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_email(tag: str = "member") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def new_org(service, *options: str) -> dict:
    """A tenant (`tenant create` options) with a token for each scope, as an organization
    would hold them."""
    tenant = service.cli("tenant", "create", f"Blynk Org {uuid.uuid4().hex[:6]}", *options)

    def token(*scopes: str) -> str:
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        return service.cli("token", "create", "--tenant", tenant["id"], *args)["token"]

    return {
        **tenant,
        "read": token("users:read"),
        "write": token("users:write"),
        "invite": token("users:invite"),
    }


@pytest.fixture(scope="module")
def org(service) -> dict:
    return new_org(service)


async def seed(
    pool: asyncpg.Pool, org: dict, *, name: str = "Seeded", role: int = 3, **columns
) -> int:
    """A user written straight into the database (states the API cannot make quickly:
    logins long ago, lock-outs); returns its Blynk id."""
    row = {
        "email": new_email("seed"),
        "is_approved": True,
        "created_at": NOW,
        "last_login_at": NOW - dt.timedelta(days=1),
        **columns,
    }
    async with pool.acquire() as conn, conn.transaction():
        user_id, number = await conn.fetchrow(
            f"""
            INSERT INTO users (id, tenant_id, user_name, name, password_hash, locale, source,
                               {", ".join(row)})
            VALUES ($1, $2, $3, $4, 'not a hash', 'en', 'self',
                    {", ".join(f"${n}" for n in range(5, 5 + len(row)))})
            RETURNING id, number
            """,
            uuid.uuid4(),
            uuid.UUID(org["id"]),
            row["email"],
            name,
            *row.values(),
        )
        await conn.execute(
            "INSERT INTO user_roles (user_id, role_id) "
            "SELECT $1, id FROM roles WHERE tenant_id = $2 AND number = $3",
            user_id,
            uuid.UUID(org["id"]),
            role,
        )
    return number


async def call(http, service, method: str, path: str, token: str | None, *, headers=None, **kwargs):
    """(status, parsed JSON body or None, response headers)."""
    headers = {**(bearer(token) if token else {}), **(headers or {})}
    async with http.request(method, service.base_url + path, headers=headers, **kwargs) as r:
        body = await r.read()
        return r.status, json.loads(body) if body else None, r.headers


async def create(http, service, org: dict, **body):
    """POST …/users/create with a users:write token: (status, body, headers)."""
    return await call(http, service, "POST", CREATE, org["write"], json=body)


async def get(http, service, path: str, token: str, **params):
    status, body, _ = await call(http, service, "GET", path, token, params=params)
    return status, body


def assert_blynk_error(body: dict, status: int, *, message: str | None = None) -> None:
    """Blynk's `{"error": {"message"}}` inside a problem+json body."""
    assert body["status"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert body["error"]["message"] == message


# --- create, and the life of a created user ------------------------------------------


async def test_create_without_password_invites_and_the_accepted_user_is_pending_then_active(
    service, org, http, mailbox
):
    email = new_email()
    status, body, _ = await create(
        http, service, org, email=email, name="Ana Horvat", locale="de_DE"
    )
    assert (status, body) == (204, None)
    mail = await mailbox.wait_for(lambda m: m["To"] == email)
    assert mail["Content-Language"] == "de"  # the invitation, in the locale asked for
    token = invitation_token(mail)
    async with http.get(f"{service.base_url}/invitations/{token}") as r:
        assert r.status == 200 and 'value="Ana Horvat"' in await r.text()  # name prefilled

    password = "ana's password"
    accept = f"{service.base_url}/api/v1/invitations/{token}/accept"
    body = {"name": "Ana Horvat", "password": password, "confirmPassword": password}
    async with http.post(accept, json=body) as r:
        assert r.status == 200

    status, found = await get(http, service, SEARCH, org["read"], query=email)
    assert status == 200 and found["totalElements"] == 1
    (summary,) = found["content"]
    assert set(summary) == SUMMARY_FIELDS
    assert summary["email"] == email and summary["name"] == "Ana Horvat"
    assert summary["roleId"] == 3 and summary["status"] == "Pending"  # never logged in
    assert isinstance(summary["id"], int) and isinstance(summary["orgId"], int)

    login = {"grant_type": "password", "username": email, "password": password}
    async with http.post(f"{service.base_url}/{org['apiKey']}/login", data=login) as r:
        assert r.status == 201
    status, user = await get(http, service, USER, org["read"], userId=summary["id"])
    assert status == 200 and set(user) == FULL_FIELDS
    assert user["status"] == "Active" and user["locale"] == "de_DE"
    assert {k: user[k] for k in SUMMARY_FIELDS - {"status"}} == {
        k: summary[k] for k in SUMMARY_FIELDS - {"status"}
    }
    now_ms = dt.datetime.now(dt.UTC).timestamp() * 1000
    for field in ("registeredAt", "lastLoggedAt", "lastModifiedTs"):
        assert isinstance(user[field], int) and now_ms - 60_000 < user[field] <= now_ms + 1000


async def test_a_self_registered_user_is_pending_until_activation_signs_them_in(
    service, http, mailbox
):
    org = new_org(service, "--activation-url-prefix", "https://app.example.com/")
    body = new_body()
    async with http.post(register_url(service, org), json=body) as r:
        assert r.status == 200
    _, found = await get(http, service, SEARCH, org["read"], query=body["email"])
    (user,) = found["content"]
    assert user["status"] == "Pending" and user["name"] == ""
    token = activation_token_in(await mailbox.wait_for(lambda m: m["To"] == body["email"]))
    async with http.put(f"{service.base_url}/{org['apiKey']}/register/activate/{token}") as r:
        assert r.status == 200 and "access_token" in await r.json()
    _, user = await get(http, service, USER, org["read"], userId=str(user["id"]))
    assert user["status"] == "Active" and isinstance(user["lastLoggedAt"], int)


async def test_create_for_an_existing_member_is_204_and_mails_nothing(
    service, org, http, mailbox, e2e_pool
):
    email = new_email()
    await seed(e2e_pool, org, email=email)
    for address in (email, email.upper()):  # the same address, whatever its case
        status, _, _ = await create(http, service, org, email=address, name="Dup")
        assert status == 204
    # A later invitation arrives; the member's would have been published before it.
    marker = new_email("marker")
    await create(http, service, org, email=marker, name="M")
    await mailbox.wait_for(lambda m: m["To"] == marker)
    assert mailbox.received(lambda m: m["To"].lower() == email.lower()) == []


async def test_create_with_a_password_makes_an_active_user_who_signs_in_with_it(
    service, org, http, e2e_pool, events_queue
):
    """With a password the user is created by the registration worker (sealed in
    transit, hashed there; source admin, approved, role User) and signs in with it at
    once; the password goes nowhere else."""
    email, password = new_email(), "a-Secret-not-for-logs-91"
    status, _, _ = await create(http, service, org, email=email, name="Pat", password=password)
    assert status == 204
    registered = json.loads((await next_event(events_queue, "user.registered")).body)["data"]
    assert registered["email"] == email and registered["source"] == "admin"
    assert registered["isApproved"] is True and registered["roles"] == ["User"]
    async with http.post(
        f"{service.base_url}/{org['apiKey']}/login",
        data={"grant_type": "password", "username": email, "password": password},
    ) as r:
        assert r.status == 201, await r.text()
    row = await e2e_pool.fetchrow(
        "SELECT password_hash, name FROM users WHERE lower(email) = lower($1)", email
    )
    assert row["name"] == "Pat" and row["password_hash"].startswith("$argon2id$")
    assert password not in service.log_text()
    # Created again: 204, nothing changes.
    status, _, _ = await create(http, service, org, email=email, name="Pat", password="other-1234")
    assert status == 204


@pytest.mark.parametrize(
    "body",
    [
        {"name": "No Email"},
        {"email": "not an address", "name": "Bad Email"},
        {"email": "x@example.com"},
        {"email": "x@example.com", "name": "R2D2"},  # Blynk: letters, - . ' and spaces
        {"email": "x@example.com", "name": "A" * 51},
        {"email": "x@example.com", "name": "   "},
        {"email": "x@example.com", "name": "Short Pw", "password": "short"},
        {"email": "x@example.com", "name": "Bad Locale", "locale": "xx_YY"},
        {"email": "x@example.com", "name": "Extra", "passwordHash": "abc"},
        {"email": 5, "name": "Typed"},
    ],
)
async def test_create_with_a_bad_body_is_400_with_a_message(service, org, http, body):
    status, answer, headers = await create(http, service, org, **body)
    assert status == 400
    assert headers["Content-Type"].startswith("application/problem+json")
    assert_blynk_error(answer, 400)


async def test_create_needs_a_json_object(service, org, http):
    status, answer, _ = await call(http, service, "POST", CREATE, org["write"], data="email=x")
    assert status == 415
    assert_blynk_error(answer, 415)
    json_type = {"Content-Type": "application/json"}
    for text in ("[1]", "{not json"):
        status, answer, _ = await call(
            http, service, "POST", CREATE, org["write"], data=text, headers=json_type
        )
        assert status == 400
        assert_blynk_error(answer, 400)


async def test_invite_takes_blynks_integer_role_id(service, org, http, mailbox):
    email = new_email()
    invite = {"email": email, "name": "Stefan", "roleId": 2}  # Staff
    status, _, _ = await call(
        http, service, "POST", f"{ORG}/users/invite", org["invite"], json=invite
    )
    assert status == 204
    token = invitation_token(await mailbox.wait_for(lambda m: m["To"] == email))
    body = {
        "name": "Stefan",
        "password": "stefan's password",
        "confirmPassword": "stefan's password",
    }
    async with http.post(f"{service.base_url}/api/v1/invitations/{token}/accept", json=body) as r:
        assert r.status == 200
    _, found = await get(http, service, SEARCH, org["read"], query=email)
    assert [u["roleId"] for u in found["content"]] == [2]
    for role_id in (99, "2", 0, True):
        status, answer, _ = await call(
            http,
            service,
            "POST",
            f"{ORG}/users/invite",
            org["invite"],
            json={**invite, "roleId": role_id},
        )
        assert status == 400, role_id
        assert "roleId" in answer["error"]["message"]


# --- who may call ----------------------------------------------------------------------

ENDPOINTS = [
    ("GET", LIST, {}, "read"),
    ("GET", SEARCH, {"query": "x"}, "read"),
    ("GET", USER, {"userId": "1"}, "read"),
    ("POST", CREATE, {}, "write"),
    ("PUT", ROLE, {"userId": "1", "roleId": "1"}, "write"),
]
ENDPOINT_IDS = [f"{method} {path}" for method, path, _, _ in ENDPOINTS]


def _request(method: str, params: dict) -> dict:
    body = {"json": {"email": new_email(), "name": "Auth Check"}} if method == "POST" else {}
    return {"params": params, **body}


@pytest.mark.parametrize(("method", "path", "params", "scope"), ENDPOINTS, ids=ENDPOINT_IDS)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic abc", "Bearer "])
async def test_no_or_an_unknown_token_is_401(
    service, http, method, path, params, scope, authorization
):
    headers = {"Authorization": authorization} if authorization else {}
    status, body, response_headers = await call(
        http, service, method, path, None, headers=headers, **_request(method, params)
    )
    assert status == 401
    assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert_blynk_error(body, 401)


@pytest.mark.parametrize(("method", "path", "params", "scope"), ENDPOINTS, ids=ENDPOINT_IDS)
async def test_a_token_without_the_scope_is_403(service, org, http, method, path, params, scope):
    wrong = ["invite", "write" if scope == "read" else "read"]
    for token in wrong:
        status, body, _ = await call(
            http, service, method, path, org[token], **_request(method, params)
        )
        assert status == 403, token
        assert_blynk_error(body, 403, message=f"the token lacks the users:{scope} scope")


async def test_a_revoked_token_is_401_from_then_on(service, org, http):
    token = service.cli("token", "create", "--tenant", org["id"], "--scope", "users:read")
    assert (await get(http, service, LIST, token["token"]))[0] == 200
    service.cli("token", "revoke", token["id"])
    assert (await get(http, service, LIST, token["token"]))[0] == 401


# --- list and search -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def crowd(service, e2e_pool) -> tuple[dict, list[int]]:
    """An organization of 25 users (ids ascending in creation order)."""
    org = new_org(service)
    ids = [
        await seed(
            e2e_pool,
            org,
            name=f"Person {chr(ord('A') + n)}",
            created_at=NOW - dt.timedelta(hours=25 - n),
        )
        for n in range(25)
    ]
    return org, ids


async def test_list_pages_are_0_based_by_id_with_the_total(service, http, crowd):
    org, ids = crowd
    status, first = await get(http, service, LIST, org["read"])  # defaults: page 0, size 20
    assert status == 200 and set(first) == {"content", "totalElements"}
    assert first["totalElements"] == 25
    assert [u["id"] for u in first["content"]] == ids[:20]
    assert all(set(u) == SUMMARY_FIELDS for u in first["content"])
    assert len({u["orgId"] for u in first["content"]}) == 1
    status, second = await get(http, service, LIST, org["read"], page="1", size="20")
    assert [u["id"] for u in second["content"]] == ids[20:]
    status, pages = await get(http, service, LIST, org["read"], page="2", size="10")
    assert [u["id"] for u in pages["content"]] == ids[20:]
    status, all_of_them = await get(http, service, LIST, org["read"], size="100")
    assert [u["id"] for u in all_of_them["content"]] == ids


@pytest.mark.parametrize("page", ["3", "1000", str(2**31 - 1)])
async def test_a_page_beyond_the_end_is_empty_with_the_total(service, http, crowd, page):
    org, _ = crowd
    status, body = await get(http, service, LIST, org["read"], page=page, size="10")
    assert (status, body) == (200, {"content": [], "totalElements": 25})


@pytest.mark.parametrize("path", [LIST, SEARCH])
@pytest.mark.parametrize(
    "params",
    [
        {"size": "0"},
        {"size": "101"},
        {"size": "-1"},
        {"size": "ten"},
        {"page": "-1"},
        {"page": "1.5"},
        {"page": str(2**31)},
        {"page": "99999999999999999999999999"},
    ],
)
async def test_bad_paging_is_400(service, http, crowd, path, params):
    org, _ = crowd
    status, body = await get(http, service, path, org["read"], **params)
    assert status == 400
    assert_blynk_error(body, 400)
    assert next(iter(params)) in body["error"]["message"]


async def test_the_list_holds_only_the_callers_organization(service, http, crowd, org):
    crowd_org, ids = crowd
    _, own = await get(http, service, LIST, org["read"], size="100")
    assert not {u["id"] for u in own["content"]} & set(ids)
    assert {u["orgId"] for u in own["content"]}.isdisjoint(
        {u["orgId"] for u in (await get(http, service, LIST, crowd_org["read"]))[1]["content"]}
    )
    status, body = await get(http, service, USER, org["read"], userId=str(ids[0]))
    assert status == 404
    assert_blynk_error(
        body,
        404,
        message=f"User with identifier {ids[0]} is not found or belong to another organization.",
    )


async def test_search_matches_name_and_email_case_insensitively(service, http, e2e_pool):
    org = new_org(service)
    tag = uuid.uuid4().hex[:8]
    by_name = await seed(e2e_pool, org, name="Zelda Fitzgerald")
    by_email = await seed(e2e_pool, org, name="Other", email=f"ZELDA-{tag}@example.com")
    literal = await seed(e2e_pool, org, name="Fifty % Off_Sale")
    await seed(e2e_pool, org, name="Nobody")

    async def found(query: str, **params) -> list[int]:
        status, body = await get(http, service, SEARCH, org["read"], query=query, **params)
        assert status == 200
        assert body["totalElements"] == len(body["content"])
        return [u["id"] for u in body["content"]]

    assert await found("zELDa") == [by_name, by_email]
    assert await found(f"zelda-{tag}") == [by_email]
    assert await found("% Off_") == [literal]  # wildcards are taken literally
    assert await found("_") == [literal]
    assert await found("no such person") == []
    assert len(await found("")) == 4  # an empty query matches everyone
    status, body = await get(http, service, SEARCH, org["read"], query="x" * 256)
    assert status == 400 and "query" in body["error"]["message"]
    assert (await get(http, service, SEARCH, org["read"], query="x" * 255))[0] == 200


async def test_search_sorts_by_blynk_columns_both_ways(service, http, e2e_pool):
    org = new_org(service)
    hour = dt.timedelta(hours=1)
    carol = await seed(e2e_pool, org, name="Carol", email=new_email("a"), created_at=NOW - hour)
    alice = await seed(
        e2e_pool, org, name="alice", email=new_email("c"), role=1, created_at=NOW - 3 * hour
    )
    bob = await seed(
        e2e_pool,
        org,
        name="Bob",
        email=new_email("b"),
        role=2,
        created_at=NOW - 2 * hour,
        is_locked_out=True,
    )

    async def order(sort_by: str, sort_order: str | None = None) -> list[int]:
        params = {"sortBy": sort_by} | ({"sortOrder": sort_order} if sort_order else {})
        status, body = await get(http, service, SEARCH, org["read"], **params)
        assert status == 200, body
        return [u["id"] for u in body["content"]]

    assert await order("User Id") == [carol, alice, bob]
    assert await order("User Id", "DESC") == [bob, alice, carol]
    assert await order("Name") == [alice, bob, carol]  # case-insensitively
    assert await order("Name", "DESC") == [carol, bob, alice]
    assert await order("Email") == [carol, bob, alice]
    assert await order("Email", "desc") == [alice, bob, carol]  # sortOrder in any case
    assert await order("Registered At") == [alice, bob, carol]
    assert await order("Registered At", "DESC") == [carol, bob, alice]
    assert await order("Role") == [alice, bob, carol]  # Admin 1, Staff 2, User 3
    assert await order("Role", "DESC") == [carol, bob, alice]
    assert await order("Status") == [carol, alice, bob]  # Active, Active, Suspended
    assert await order("status", "DESC") == [bob, alice, carol]  # ties: by id, same way
    assert await order("Country") == [carol, alice, bob]  # no such data: by id
    for bad in ({"sortBy": "Password"}, {"sortOrder": "UP"}):
        status, body = await get(http, service, SEARCH, org["read"], **bad)
        assert status == 400 and next(iter(bad)) in body["error"]["message"]


async def test_status_follows_approval_logins_and_locks(service, http, e2e_pool):
    org = new_org(service)
    days = dt.timedelta(days=1)
    expected = {
        await seed(e2e_pool, org, is_approved=False, last_login_at=None): "Pending",
        await seed(e2e_pool, org, last_login_at=None): "Pending",
        await seed(e2e_pool, org, last_login_at=NOW - 29 * days): "Active",
        await seed(e2e_pool, org, last_login_at=NOW - 31 * days): "Inactive",
        await seed(e2e_pool, org, is_locked_out=True): "Suspended",
        await seed(e2e_pool, org, locked_until=NOW + days): "Suspended",
        await seed(e2e_pool, org, locked_until=NOW - days): "Active",  # lock-out over
    }
    _, page = await get(http, service, LIST, org["read"])
    assert {u["id"]: u["status"] for u in page["content"]} == expected
    for user_id, status in expected.items():
        assert (await get(http, service, USER, org["read"], userId=str(user_id)))[1][
            "status"
        ] == status


# --- one user, and changing its role -----------------------------------------------------


@pytest.mark.parametrize("user_id", [None, "", "abc", "0", "-4", "1.5", str(2**63)])
async def test_a_bad_user_id_is_400(service, org, http, user_id):
    params = {} if user_id is None else {"userId": user_id}
    status, body = await get(http, service, USER, org["read"], **params)
    assert status == 400 and "userId" in body["error"]["message"]


async def test_an_unknown_user_is_404_with_blynks_message(service, org, http):
    status, body = await get(http, service, USER, org["read"], userId=str(2**63 - 1))
    assert status == 404
    assert body["type"].endswith("/user-not-found")
    assert_blynk_error(
        body,
        404,
        message=f"User with identifier {2**63 - 1} is not found or belong to another organization.",
    )


async def test_change_role_answers_the_user_and_publishes_user_updated(
    service, org, http, e2e_pool, events_queue
):
    two_days_ago = NOW - dt.timedelta(days=2)
    user_id = await seed(e2e_pool, org, created_at=two_days_ago, updated_at=two_days_ago)
    _, before = await get(http, service, USER, org["read"], userId=str(user_id))
    assert before["roleId"] == 3

    status, user, _ = await call(
        http, service, "PUT", ROLE, org["write"], params={"userId": user_id, "roleId": 1}
    )
    assert status == 200 and set(user) == FULL_FIELDS
    assert user["id"] == user_id and user["roleId"] == 1
    assert user["lastModifiedTs"] > before["lastModifiedTs"]
    assert (await get(http, service, USER, org["read"], userId=str(user_id)))[1] == user

    uid = await e2e_pool.fetchval("SELECT id FROM users WHERE number = $1", user_id)
    while True:
        event = json.loads((await next_event(events_queue, "user.updated")).body)
        if event["data"]["userId"] == str(uid):
            break
    assert event["type"] == "registrar.user.updated.v1"
    assert event["data"]["tenantId"] == org["id"] and event["data"]["changed"] == ["roles"]
    roles = await e2e_pool.fetch(
        "SELECT r.number FROM user_roles ur JOIN roles r ON r.id = ur.role_id "
        "WHERE ur.user_id = $1",
        uid,
    )
    assert [r["number"] for r in roles] == [1]  # replaced, not added

    # The same role again changes nothing: the same user, no event.
    status, again, _ = await call(
        http, service, "PUT", ROLE, org["write"], params={"userId": user_id, "roleId": 1}
    )
    assert (status, again) == (200, user)
    updates = await e2e_pool.fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'user.updated' "
        "AND body->'data'->>'userId' = $1",
        str(uid),
    )
    assert updates == 1


async def test_change_role_replaces_several_roles_with_one(service, org, http, e2e_pool):
    user_id = await seed(e2e_pool, org, role=1)
    await e2e_pool.execute(
        "INSERT INTO user_roles (user_id, role_id) SELECT u.id, r.id FROM users u "
        "JOIN roles r ON r.tenant_id = u.tenant_id AND r.number = 2 WHERE u.number = $1",
        user_id,
    )
    assert (await get(http, service, USER, org["read"], userId=str(user_id)))[1]["roleId"] == 1
    status, user, _ = await call(
        http, service, "PUT", ROLE, org["write"], params={"userId": user_id, "roleId": 2}
    )
    assert status == 200 and user["roleId"] == 2
    count = await e2e_pool.fetchval(
        "SELECT count(*) FROM user_roles ur JOIN users u ON u.id = ur.user_id WHERE u.number = $1",
        user_id,
    )
    assert count == 1


async def test_change_role_to_an_unknown_role_or_user_is_404(service, org, http, e2e_pool):
    user_id = await seed(e2e_pool, org)
    other = new_org(service)
    await e2e_pool.execute(
        "INSERT INTO roles (id, tenant_id, number, name) VALUES ($1, $2, 4, 'Elsewhere')",
        uuid.uuid4(),
        uuid.UUID(other["id"]),
    )
    for role_id in (4, 99):  # 4: a role of another organization only
        status, body, _ = await call(
            http, service, "PUT", ROLE, org["write"], params={"userId": user_id, "roleId": role_id}
        )
        assert status == 404
        assert_blynk_error(body, 404, message="Role is not found.")
    status, body, _ = await call(
        http, service, "PUT", ROLE, other["write"], params={"userId": user_id, "roleId": 1}
    )
    assert status == 404 and body["type"].endswith("/user-not-found")
    assert (await get(http, service, USER, org["read"], userId=str(user_id)))[1]["roleId"] == 3


@pytest.mark.parametrize(
    "params", [{}, {"userId": "1"}, {"roleId": "1"}, {"userId": "1", "roleId": "admin"}]
)
async def test_change_role_needs_both_ids(service, org, http, params):
    status, body, _ = await call(http, service, "PUT", ROLE, org["write"], params=params)
    assert status == 400
    assert_blynk_error(body, 400)


# --- Blynk's error body everywhere under /api/v1/organization/ -----------------------------


async def test_other_failures_on_blynk_routes_carry_blynks_error_too(service, org, http):
    status, body, headers = await call(http, service, "DELETE", LIST, org["write"])
    assert status == 405 and "GET" in headers["Allow"]
    assert_blynk_error(body, 405)
    # The invitation endpoints of SPEC §4 answer the same way.
    status, body, _ = await call(
        http,
        service,
        "POST",
        f"{ORG}/users/register",
        org["invite"],
        json={"email": "not an address"},
    )
    assert status == 400 and body["type"].endswith("/validation")
    assert body["error"]["message"].startswith("one or more fields are invalid: email: ")
    # Elsewhere problems stay as they were.
    async with http.get(f"{service.base_url}/nokey/register/requests/{uuid.uuid4()}") as r:
        assert "error" not in await r.json()
