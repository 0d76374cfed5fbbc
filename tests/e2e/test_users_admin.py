"""The Baasic-shaped back office end to end (SPEC §11), against the real gateway and
workers: users listed, searched, sorted and paged; read, created (through the
registration worker), changed, approved, locked and deleted; roles administered; every
route's 401 and 403; the events on the broker."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.conftest import text_of
from tests.e2e.conftest import next_event
from tests.e2e.test_account_life_cycle import bearer, login, me
from tests.e2e.test_self_registration import USER_FIELDS, activation_token_in

pytestmark = pytest.mark.e2e
ACTIVATION_URL = "https://app.example.com/activate/{activationToken}"
PAGE_FIELDS = {"item", "page", "recordsPerPage", "totalRecords", "searchQuery", "sort", "_links"}

# Every back-office route, with the scope it needs.
ROUTES = [
    ("GET", "users", "users:read"),
    ("POST", "users", "users:write"),
    ("GET", "users/{user}", "users:read"),
    ("PUT", "users/{user}", "users:write"),
    ("DELETE", "users/{user}", "users:write"),
    ("GET", "users/{user}/exists", "users:read"),
    ("PUT", "users/{user}/approve", "users:write"),
    ("PUT", "users/{user}/disapprove", "users:write"),
    ("PUT", "users/{user}/lock", "users:write"),
    ("PUT", "users/{user}/unlock", "users:write"),
    ("GET", "lookups/roles", "users:read"),
    ("POST", "lookups/roles", "users:write"),
    ("GET", "lookups/roles/{role}", "users:read"),
    ("PUT", "lookups/roles/{role}", "users:write"),
    ("DELETE", "lookups/roles/{role}", "users:write"),
]


def new_user(prefix: str = "admin", **fields) -> dict:
    """A valid body for POST /users, unique names."""
    tag = uuid.uuid4().hex[:10]
    password = f"pw-{tag}-Secret!"
    return {
        "userName": f"{prefix}_{tag}",
        "email": f"{prefix}-{tag}@example.com",
        "password": password,
        "confirmPassword": password,
    } | fields


class Office:
    """One tenant's back office: its API key and tokens, and calls made with them."""

    def __init__(self, service, http, tenant: dict, tokens: dict[str, str]) -> None:
        self.service, self.http, self.tenant, self.tokens = service, http, tenant, tokens

    def url(self, path: str) -> str:
        return f"{self.service.base_url}/{self.tenant['apiKey']}/{path}"

    async def call(self, method: str, path: str, *, token: str = "write", **kwargs):
        """(status, JSON body or None, headers) of a call with one of the tokens."""
        headers = bearer(self.tokens[token]) if token else {}
        async with self.http.request(
            method, self.url(path), headers=headers | kwargs.pop("headers", {}), **kwargs
        ) as response:
            text = await response.text()
            body = json.loads(text) if text else None
            return response.status, body, response.headers

    async def create(self, **fields) -> dict:
        """A user created through POST /users (201 asserted)."""
        body = new_user(**fields)
        status, user, _ = await self.call("POST", "users", json=body)
        assert status == 201, user
        return user | {"password": body["password"]}


def new_office(service, http, name: str) -> Office:
    tenant = service.cli(
        "tenant", "create", name, "--activation-url-prefix", "https://app.example.com/"
    )

    def token(*scopes: str) -> str:
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        return service.cli("token", "create", "--tenant", tenant["id"], *args)["token"]

    tokens = {
        "read": token("users:read"),
        "write": token("users:read", "users:write"),
        "write_only": token("users:write"),
        "invite": token("users:invite"),
    }
    return Office(service, http, tenant, tokens)


@pytest.fixture
def office(service, http) -> Office:
    return new_office(service, http, f"Office {uuid.uuid4().hex[:6]}")


async def events_of(queue, routing_key: str, user_id: str) -> dict:
    """The next `routing_key` event about `user_id` (others skipped)."""
    while True:
        message = await next_event(queue, routing_key)
        event = json.loads(message.body)
        if event["data"]["userId"] == user_id:
            return event


# --- authorization -------------------------------------------------------------------


async def test_every_route_is_401_without_a_token_of_the_tenant_and_403_without_the_scope(
    service, http, office
):
    user = await office.create()
    foreign = new_office(service, http, "Elsewhere")
    role = (await office.call("GET", "lookups/roles"))[1]["item"][0]["id"]
    office.tokens |= {"foreign": foreign.tokens["write"], "unknown": "no-such-token"}
    for method, template, scope in ROUTES:
        path = template.format(user=user["id"], role=role)
        for token in ("", "unknown", "foreign"):
            status, body, headers = await office.call(method, path, token=token, json={})
            assert status == 401, (method, path, token, body)
            assert body["type"].endswith("/unauthorized")
            assert headers["WWW-Authenticate"].startswith("Bearer")
        wrong = ("invite", "write_only") if scope == "users:read" else ("invite", "read")
        for token in wrong:
            status, body, _ = await office.call(method, path, token=token, json={})
            assert status == 403, (method, path, token, body)
        # The API key in the path must be the tenant's too.
        async with http.request(
            method, f"{service.base_url}/not-a-key/{path}", headers=bearer(office.tokens["write"])
        ) as response:
            assert response.status == 401
    # None of the refused calls changed anything.
    unchanged = {k: v for k, v in user.items() if k != "password"}
    assert (await office.call("GET", f"users/{user['id']}"))[1] == unchanged
    assert (await office.call("GET", f"lookups/roles/{role}"))[0] == 200


# --- users -----------------------------------------------------------------------------


async def test_create_get_exists_update_and_delete_a_user(office, http, service, events_queue):
    status, created, headers = await office.call(
        "POST",
        "users",
        json={
            "userName": "Grace.Hopper",
            "email": f"grace-{uuid.uuid4().hex[:6]}@example.com",
            "password": "cobol-1959-Secret",
            "confirmPassword": "cobol-1959-Secret",
            "name": "Grace Hopper",
            "roles": ["Staff"],
            "isApproved": True,
        },
    )
    assert status == 201, created
    assert set(created) == USER_FIELDS
    user_id = created["id"]
    assert headers["Location"] == f"/{office.tenant['apiKey']}/users/{user_id}"
    assert created["_links"]["self"]["href"] == headers["Location"]
    assert created["userName"] == "Grace.Hopper" and created["name"] == "Grace Hopper"
    assert created["isApproved"] is True and created["isLockedOut"] is False
    assert [r["name"] for r in created["roles"]] == ["Staff"]

    registered = await events_of(events_queue, "user.registered", user_id)
    assert registered["data"]["source"] == "admin"
    assert registered["data"]["roles"] == ["Staff"] and registered["data"]["isApproved"] is True
    assert registered["data"]["name"] == "Grace Hopper"
    # The worker hashed the password it was given: the user signs in with it.
    status, _ = await login(http, service, office.tenant, "grace.hopper", "cobol-1959-Secret")
    assert status == 201

    for key in ("Grace.Hopper", "grace.hopper", user_id):
        status, got, _ = await office.call("GET", f"users/{key}", token="read")
        assert status == 200 and got == created
        assert (await office.call("GET", f"users/{key}/exists", token="read"))[0] == 204
    assert (await office.call("GET", "users/nobody-here", token="read"))[0] == 404
    assert (await office.call("GET", "users/nobody-here/exists/", token="read"))[0] == 404
    assert (await office.call("GET", f"users/{uuid.uuid4()}", token="read"))[0] == 404

    new_email = f"rear.admiral-{uuid.uuid4().hex[:6]}@example.com"
    status, _, _ = await office.call(
        "PUT",
        f"users/{user_id}",
        json={"email": new_email, "name": "Rear Admiral Hopper", "roles": ["User", "staff"]},
    )
    assert status == 204
    updated = await events_of(events_queue, "user.updated", user_id)
    assert updated["data"]["changed"] == ["email", "name", "roles"]
    got = (await office.call("GET", f"users/{user_id}"))[1]
    assert got["email"] == new_email and got["name"] == "Rear Admiral Hopper"
    assert sorted(r["name"] for r in got["roles"]) == ["Staff", "User"]
    assert got["dateUpdated"] > created["dateUpdated"]

    # Baasic's SDKs PUT back the object they read: read-only fields are ignored, roles
    # may be the role objects; the same values again change nothing.
    status, _, _ = await office.call("PUT", f"users/{user_id}/", json=got)
    assert status == 204
    assert (await office.call("GET", f"users/{user_id}"))[1] == got
    renamed = {"userName": "amazing.grace"}
    assert (await office.call("PUT", "users/Grace.Hopper", json=renamed))[0] == 204
    assert (await office.call("GET", "users/amazing.grace"))[1]["id"] == user_id
    assert (await events_of(events_queue, "user.updated", user_id))["data"]["changed"] == [
        "userName"
    ]

    status, _, _ = await office.call("DELETE", f"users/{user_id}")
    assert status == 204
    deleted = await events_of(events_queue, "user.deleted", user_id)
    assert deleted["data"]["by"] == "admin"
    assert (await office.call("GET", f"users/{user_id}"))[0] == 404
    assert (await office.call("DELETE", f"users/{user_id}"))[0] == 404
    assert (await office.call("GET", "users/amazing.grace/exists"))[0] == 404
    # The address and the userName are free again.
    again = await office.create(userName="amazing.grace", email=new_email.upper())
    assert again["id"] != user_id


async def test_changes_that_collide_or_name_nothing_are_refused(office):
    first, second = await office.create(), await office.create()
    path = f"users/{second['id']}"
    status, body, _ = await office.call("PUT", path, json={"email": first["email"].upper()})
    assert status == 409 and body["type"].endswith("/email-taken")
    status, body, _ = await office.call("PUT", path, json={"userName": first["userName"].upper()})
    assert status == 409 and body["type"].endswith("/username-taken")
    status, body, _ = await office.call("PUT", path, json={"roles": ["User", "Wizard"]})
    assert status == 400 and "wizard" in body["detail"]
    status, body, _ = await office.call("PUT", path, json={"roles": [{"id": str(uuid.uuid4())}]})
    assert status == 400
    for bad in ({"email": "not an address"}, {"userName": "x"}, {"nickname": "Bob"},
                {"name": "nul\u0000"}, {"roles": "User"}):  # fmt: skip
        status, body, _ = await office.call("PUT", path, json=bad)
        assert status == 400, (bad, body)
    status, body, _ = await office.call(
        "PUT", path, data=b"[]", headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert (await office.call("PUT", "users/nobody-here", json={"name": "X"}))[0] == 404
    # Nothing changed.
    got = (await office.call("GET", path))[1]
    assert got["email"] == second["email"] and got["userName"] == second["userName"]
    assert [r["name"] for r in got["roles"]] == ["User"]


async def test_creating_a_taken_or_invalid_user_is_refused(office, e2e_pool):
    taken = await office.create()
    fresh = new_user("fresh")
    status, body, _ = await office.call(
        "POST", "users", json=fresh | {"email": taken["email"].upper()}
    )
    assert status == 409 and body["type"].endswith("/email-taken")
    status, body, _ = await office.call(
        "POST", "users", json=fresh | {"userName": taken["userName"].upper()}
    )
    assert status == 409 and body["type"].endswith("/username-taken")
    refused = [
        fresh | {"confirmPassword": "something-else"},
        fresh | {"password": "short", "confirmPassword": "short"},
        fresh | {"roles": ["Wizard"]},
        fresh | {"sendEmailNotification": True},  # not approved: where would the link go?
        fresh | {"sendEmailNotification": True, "activationUrl": "https://evil.example/{activationToken}"},
        fresh | {"userName": "bad\u0000name"},
        fresh | {"name": "\ud800"},
        fresh | {"isApproved": "yes"},
        {k: v for k, v in fresh.items() if k != "email"},
    ]  # fmt: skip
    for body in refused:
        status, answer, _ = await office.call("POST", "users", json=body)
        assert status == 400, (body, answer)
        assert answer["type"].endswith(("/validation", "/bad-request"))
    status, _, _ = await office.call(
        "POST", "users", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert (await office.call("POST", "users", data=b"x", headers={"Content-Type": "text/plain"}))[
        0
    ] == 415
    assert not await e2e_pool.fetchval(
        "SELECT count(*) FROM users WHERE lower(email) = $1", fresh["email"]
    )
    # Finally the same body, valid: created.
    assert (await office.call("POST", "users", json=fresh))[0] == 201


async def test_creating_mails_an_activation_link_or_a_welcome_only_when_asked(
    office, http, service, mailbox, e2e_pool
):
    unapproved = await office.create(sendEmailNotification=True, activationUrl=ACTIVATION_URL)
    assert unapproved["isApproved"] is False
    mail = await mailbox.wait_for(lambda m: m["To"] == unapproved["email"])
    token = activation_token_in(mail)
    async with http.put(office.url(f"register/activate/{token}")) as response:
        assert response.status == 200
        assert (await response.json())["isApproved"] is True

    welcomed = await office.create(isApproved=True, sendEmailNotification=True, name="Ada")
    mail = await mailbox.wait_for(lambda m: m["To"] == welcomed["email"])
    assert "Ada" in text_of(mail) and "/activate/" not in text_of(mail)

    # Without sendEmailNotification nothing is mailed (the email row would be written in
    # the transaction that created the user, before the 201).
    quiet = await office.create(activationUrl=ACTIVATION_URL)
    assert not await e2e_pool.fetchval(
        "SELECT count(*) FROM emails WHERE recipient = $1", quiet["email"]
    )
    # Not approved and not mailed: no login until an administrator approves.
    assert (await login(http, service, office.tenant, quiet["userName"], quiet["password"]))[
        0
    ] == 401
    assert (await office.call("PUT", f"users/{quiet['id']}/approve"))[0] == 204
    assert (await login(http, service, office.tenant, quiet["userName"], quiet["password"]))[
        0
    ] == 201


async def test_create_waits_honours_prefer_and_idempotency_key(office):
    body = new_user("async")
    tag = body["userName"]
    headers = {"Prefer": "respond-async", "Idempotency-Key": f"key-{tag}"}
    status, pending, answer_headers = await office.call("POST", "users", json=body, headers=headers)
    assert status == 202 and pending["status"] == "pending"
    # The same key and body again: the same request, and once decided its user (201).
    for _ in range(100):
        status, user, _ = await office.call(
            "POST", "users", json=body, headers={"Idempotency-Key": f"key-{tag}"}
        )
        if status == 201:
            break
        await asyncio.sleep(0.1)
    assert status == 201 and user["userName"] == body["userName"]
    status, _, _ = await office.call(
        "POST", "users", json=body | {"name": "Other"}, headers={"Idempotency-Key": f"key-{tag}"}
    )
    assert status == 422
    assert answer_headers["Location"].endswith(pending["requestId"])


async def test_approve_disapprove_lock_and_unlock(office, http, service, events_queue):
    user = await office.create(isApproved=True)
    user_id, name, password = user["id"], user["userName"], user["password"]
    status, grant = await login(http, service, office.tenant, name, password)
    assert status == 201
    session = grant["access_token"]

    assert (await office.call("PUT", f"users/{name}/lock", json=user))[0] == 204
    locked = await events_of(events_queue, "user.locked", user_id)
    assert locked["data"]["reason"] == "admin" and locked["data"]["lockedUntil"] is None
    assert (await office.call("GET", f"users/{user_id}"))[1]["isLockedOut"] is True
    assert await me(http, service, office.tenant, session) == 401  # sessions end at once
    assert (await login(http, service, office.tenant, name, password))[0] == 401
    assert (await office.call("PUT", f"users/{name}/lock/"))[0] == 204  # already: no change

    assert (await office.call("PUT", f"users/{user_id}/unlock", data=b"{}"))[0] == 204
    await events_of(events_queue, "user.unlocked", user_id)
    assert (await office.call("GET", f"users/{user_id}"))[1]["isLockedOut"] is False
    assert (await login(http, service, office.tenant, name, password))[0] == 201

    assert (await office.call("PUT", f"users/{user_id}/disapprove"))[0] == 204
    disapproved = await events_of(events_queue, "user.updated", user_id)
    assert disapproved["data"]["changed"] == ["isApproved"]
    assert (await office.call("GET", f"users/{user_id}"))[1]["isApproved"] is False
    assert (await login(http, service, office.tenant, name, password))[0] == 401

    assert (await office.call("PUT", f"users/{user_id}/approve"))[0] == 204
    await events_of(events_queue, "user.activated", user_id)
    assert (await office.call("GET", f"users/{user_id}"))[1]["isApproved"] is True
    assert (await login(http, service, office.tenant, name, password))[0] == 201

    for action in ("approve", "disapprove", "lock", "unlock"):
        assert (await office.call("PUT", f"users/nobody-here/{action}"))[0] == 404


async def test_unlock_lifts_a_lock_out_after_failed_logins(office, http, service, events_queue):
    user = await office.create(isApproved=True)
    for _ in range(5):
        assert (await login(http, service, office.tenant, user["userName"], "wrong-pw!"))[0] == 401
    await events_of(events_queue, "user.locked", user["id"])
    assert (await login(http, service, office.tenant, user["userName"], user["password"]))[0] == 401
    assert (await office.call("PUT", f"users/{user['id']}/unlock"))[0] == 204
    await events_of(events_queue, "user.unlocked", user["id"])
    assert (await login(http, service, office.tenant, user["userName"], user["password"]))[0] == 201


async def test_path_segments_no_user_can_have_are_404_not_500(office):
    for segment in ("%00", "a%00b", "%ED%A0%80", "x" * 400):
        for method, suffix in (("GET", ""), ("GET", "/exists"), ("PUT", "/lock"), ("DELETE", "")):
            status, _, _ = await office.call(method, f"users/{segment}{suffix}")
            assert status == 404, (segment, method, suffix)
    for segment in ("%00", "not-a-uuid", str(uuid.uuid4())):
        assert (await office.call("GET", f"lookups/roles/{segment}"))[0] == 404


# --- the list --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def listed(service):
    """A tenant of its own with seven users: names, addresses and states to sort,
    filter and search by."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        office = new_office(service, http, "Listing")
        # userName, name, approved, address: addresses sort the other way round.
        people = [
            ("alice", "Alice Archer", True, "zed@zeta.example"),
            ("bob", "Bob Baker", True, "yak@zeta.example"),
            ("carol", "Carol Cooper", False, "xen@zeta.example"),
            ("dave", "Dave 100% Dyer", True, "wolf@alpha.example"),
            ("erin", "Erin Evans", False, "vole@alpha.example"),
            ("frank", "Frank Fisher", True, "urchin@alpha.example"),
            ("Grace", "Grace Green", True, "tern@alpha.example"),
        ]
        users = []
        for name, full, approved, email in people:  # one by one: dateCreated in this order
            users.append(
                await office.create(userName=name, email=email, name=full, isApproved=approved)
            )
        assert (await office.call("PUT", "users/frank/lock"))[0] == 204
    return office.tenant, office.tokens, users


@pytest.fixture
def lister(listed, service, http) -> Office:
    tenant, tokens, _ = listed
    return Office(service, http, tenant, tokens)


async def page(lister: Office, **query) -> dict:
    status, body, _ = await lister.call("GET", "users", token="read", params=query)
    assert status == 200, body
    assert set(body) == PAGE_FIELDS
    return body


def names(body: dict) -> list[str]:
    return [u["userName"] for u in body["item"]]


async def test_pages_of_users_with_their_links(lister, listed, http, service):
    first = await page(lister, rpp="3")
    assert names(first) == ["alice", "bob", "carol"]
    assert (first["page"], first["recordsPerPage"], first["totalRecords"]) == (1, 3, 7)
    assert first["sort"] == "userName|asc" and first["searchQuery"] == ""
    assert set(first["_links"]) == {"self", "next"}
    assert all(set(u) == USER_FIELDS for u in first["item"])
    assert first["item"][0]["_links"]["self"]["href"].endswith(f"/users/{first['item'][0]['id']}")

    async def follow(link: dict) -> dict:
        async with http.get(
            service.base_url + link["href"], headers=bearer(lister.tokens["read"])
        ) as r:
            assert r.status == 200
            return await r.json()

    second = await follow(first["_links"]["next"])
    assert names(second) == ["dave", "erin", "frank"] and second["page"] == 2
    assert set(second["_links"]) == {"self", "next", "previous"}
    last = await follow(second["_links"]["next"])
    assert names(last) == ["Grace"] and set(last["_links"]) == {"self", "previous"}
    assert await follow(last["_links"]["previous"]) == second
    assert await follow(second["_links"]["self"]) == second

    beyond = await page(lister, rpp="3", page="4")
    assert beyond["item"] == [] and beyond["totalRecords"] == 7
    assert set(beyond["_links"]) == {"self", "previous"}
    whole = await page(lister, rpp="100")
    assert len(whole["item"]) == 7 and set(whole["_links"]) == {"self"}
    assert names(await page(lister)) == names(whole)  # default rpp 10
    # The trailing slash Baasic's SDKs add.
    async with http.get(lister.url("users/"), headers=bearer(lister.tokens["read"])) as response:
        assert response.status == 200


async def test_every_sort_in_both_directions(lister, listed):
    _, _, users = listed
    created = [u["userName"] for u in users]
    expected = {
        "userName": ["alice", "bob", "carol", "dave", "erin", "frank", "Grace"],
        "email": ["Grace", "frank", "erin", "dave", "carol", "bob", "alice"],
        "dateCreated": created,
    }
    for field, order in expected.items():
        for rpp in ("2", "7"):  # pages read from either end give the same order
            asc, desc = [], []
            for n in range(1, 5):
                asc += names(await page(lister, sort=f"{field}|asc", rpp=rpp, page=str(n)))
                desc += names(await page(lister, sort=f"{field}|DESC", rpp=rpp, page=str(n)))
            assert asc == order and desc == order[::-1], (field, rpp)
    assert names(await page(lister, sort="username")) == expected["userName"]  # default asc
    updated = names(await page(lister, sort="dateUpdated|desc", rpp="1"))
    assert updated == ["frank"]  # locked last


async def test_filters_and_search(lister):
    approved = await page(lister, isApproved="true")
    assert names(approved) == ["alice", "bob", "dave", "frank", "Grace"]
    assert approved["totalRecords"] == 5
    assert names(await page(lister, isApproved="false")) == ["carol", "erin"]
    assert names(await page(lister, isLocked="true")) == ["frank"]
    assert (await page(lister, isLocked="false"))["totalRecords"] == 6
    both = await page(lister, isApproved="True", isLocked="false", rpp="2", page="2")
    assert names(both) == ["dave", "Grace"] and both["totalRecords"] == 4
    assert "isApproved=true" in both["_links"]["self"]["href"]

    assert names(await page(lister, searchQuery="ALI")) == ["alice"]  # userName
    assert names(await page(lister, searchQuery="alpha.example")) == [
        "dave",
        "erin",
        "frank",
        "Grace",
    ]
    assert names(await page(lister, searchQuery="cooper")) == ["carol"]  # name
    assert names(await page(lister, searchQuery="100%")) == ["dave"]  # % is a character
    assert (await page(lister, searchQuery="_"))["totalRecords"] == 0
    searched = await page(lister, searchQuery="e", isApproved="false", rpp="1")
    assert searched["totalRecords"] == 2 and names(searched) == ["carol"]
    assert searched["searchQuery"] == "e" and "searchQuery=e" in searched["_links"]["next"]["href"]
    assert (await page(lister, searchQuery="nobody at all"))["totalRecords"] == 0


@pytest.mark.parametrize(
    "query",
    [
        {"rpp": "0"},
        {"rpp": "101"},
        {"rpp": "ten"},
        {"page": "0"},
        {"page": "-1"},
        {"page": "1.5"},
        {"page": "9" * 30},
        {"sort": "password|asc"},
        {"sort": "userName|sideways"},
        {"isApproved": "maybe"},
        {"isLocked": "1"},
        {"searchQuery": "tab\there"},
        {"searchQuery": "x" * 201},
    ],
)
async def test_bad_paging_queries_are_400(lister, query):
    status, body, _ = await lister.call("GET", "users", token="read", params=query)
    assert status == 400 and body["type"].endswith("/validation"), body
    field = next(iter(query))
    assert [e["field"] for e in body["errors"]] == [field]
    status, _, _ = await lister.call("GET", "lookups/roles", token="read", params=query)
    assert status == (200 if field in ("isApproved", "isLocked") else 400)


async def test_the_largest_page_and_nul_in_the_search(lister):
    assert (await page(lister, rpp="100"))["recordsPerPage"] == 100
    status, _, _ = await lister.call("GET", "users", token="read", params={"searchQuery": "a\x00"})
    assert status == 400


# --- roles -----------------------------------------------------------------------------


async def test_roles_lookup(office, events_queue):
    roles = await office.call("GET", "lookups/roles", token="read")
    assert roles[0] == 200 and set(roles[1]) == PAGE_FIELDS
    assert [r["name"] for r in roles[1]["item"]] == ["Admin", "Staff", "User"]
    assert roles[1]["totalRecords"] == 3
    assert set(roles[1]["item"][0]) == {
        "id",
        "name",
        "description",
        "dateCreated",
        "dateUpdated",
        "_links",
    }

    status, editor, headers = await office.call(
        "POST", "lookups/roles", json={"name": "Editor", "description": "Edits things"}
    )
    assert status == 201 and editor["name"] == "Editor"
    assert headers["Location"] == editor["_links"]["self"]["href"]
    assert (await office.call("GET", f"lookups/roles/{editor['id']}", token="read"))[1] == editor
    status, body, _ = await office.call("POST", "lookups/roles", json={"name": "EDITOR"})
    assert status == 409 and body["type"].endswith("/role-taken")
    for bad in (
        {},
        {"name": ""},
        {"name": "  "},
        {"name": "x\u0000"},
        {"name": 7},
        {"name": "A", "rank": 1},
    ):
        assert (await office.call("POST", "lookups/roles", json=bad))[0] == 400, bad

    # Paged, sorted and searched like users.
    listed = (await office.call("GET", "lookups/roles", params={"sort": "name|desc", "rpp": "2"}))[
        1
    ]
    assert [r["name"] for r in listed["item"]] == ["User", "Staff"] and listed["totalRecords"] == 4
    assert "next" in listed["_links"]
    found = (await office.call("GET", "lookups/roles", params={"searchQuery": "edits"}))[1]
    assert [r["name"] for r in found["item"]] == ["Editor"]

    path = f"lookups/roles/{editor['id']}"
    assert (await office.call("PUT", path, json={"name": "Author"}))[0] == 204
    author = (await office.call("GET", path))[1]
    assert author["name"] == "Author" and author["description"] == "Edits things"
    assert author["dateUpdated"] > editor["dateUpdated"]
    assert (await office.call("PUT", path, json={"name": "staff"}))[0] == 409
    assert (await office.call("PUT", path, json=author | {"description": "Writes"}))[0] == 204
    staff = next(r for r in roles[1]["item"] if r["name"] == "Staff")
    assert (await office.call("PUT", f"lookups/roles/{staff['id']}", json={"name": "Crew"}))[
        0
    ] == 409
    assert (await office.call("PUT", f"lookups/roles/{staff['id']}", json={"description": "Crew"}))[
        0
    ] == 204

    # A role users hold stays; once nobody holds it, it goes.
    user = await office.create(roles=["Author"])
    assert [r["name"] for r in user["roles"]] == ["Author"]
    status, body, _ = await office.call("DELETE", path)
    assert status == 409 and body["type"].endswith("/role-in-use")
    assert (await office.call("PUT", f"users/{user['id']}", json={"roles": []}))[0] == 204
    assert (await events_of(events_queue, "user.updated", user["id"]))["data"]["changed"] == [
        "roles"
    ]
    assert (await office.call("DELETE", path + "/"))[0] == 204
    assert (await office.call("GET", path))[0] == 404
    assert (await office.call("DELETE", path))[0] == 404
    assert (await office.call("PUT", path, json={"name": "Ghost"}))[0] == 404
    assert (await office.call("DELETE", f"lookups/roles/{staff['id']}"))[0] == 409
    # The name is free again.
    assert (await office.call("POST", "lookups/roles", json={"name": "Author"}))[0] == 201
