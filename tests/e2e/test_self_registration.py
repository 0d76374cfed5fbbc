"""Self-service registration end to end: HTTP -> RabbitMQ -> worker -> PostgreSQL ->
SMTP -> activation, with real processes and real infrastructure."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest

from tests.conftest import solve_pow, text_of
from tests.e2e.conftest import next_event

pytestmark = pytest.mark.e2e
ACTIVATION_URL = "https://app.example.com/activate/{activationToken}"
USER_FIELDS = {
    "id",
    "userName",
    "email",
    "name",
    "creationDate",
    "dateCreated",
    "dateUpdated",
    "isApproved",
    "isLockedOut",
    "roles",
    "dashboardSettings",
    "locale",
    "_links",
}


def new_body(**overrides: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    body = {
        "activationUrl": ACTIVATION_URL,
        "challengeIdentifier": "none",
        "challengeResponse": "none",
        "email": f"user-{tag}@example.com",
        "userName": f"user_{tag}",
        "password": f"pw-{tag}-Secret!",
        "confirmPassword": f"pw-{tag}-Secret!",
    }
    body.update(overrides)
    if "password" in overrides and "confirmPassword" not in overrides:
        body["confirmPassword"] = overrides["password"]
    return body


def register_url(service, tenant) -> str:
    return f"{service.base_url}/{tenant['apiKey']}/register"


def activation_token_in(message, prefix: str = "https://app.example.com/activate/") -> str:
    match = re.search(re.escape(prefix) + r"([A-Za-z0-9_\-]+)", text_of(message))
    assert match, "activation link missing from the email"
    return match.group(1)


async def test_registration_returns_user_sends_activation_mail_and_activates(
    service, tenant, http, mailbox, events_queue
):
    body = new_body()
    async with http.post(
        register_url(service, tenant), json=body, headers={"Accept-Language": "de-AT, en;q=0.5"}
    ) as response:
        assert response.status == 200
        user = await response.json()
    assert set(user) >= USER_FIELDS
    assert user["email"] == body["email"] and user["userName"] == body["userName"]
    assert user["isApproved"] is False and user["isLockedOut"] is False
    assert user["locale"] == "de"
    assert [role["name"] for role in user["roles"]] == ["User"]
    assert {"self", "activate"} <= set(user["_links"])

    registered = await next_event(events_queue, "user.registered")
    assert registered.content_type == "application/cloudevents+json"
    event = json.loads(registered.body)
    assert event["specversion"] == "1.0" and event["type"] == "registrar.user.registered.v1"
    assert event["id"] == registered.message_id
    assert event["data"]["userId"] == user["id"] and event["data"]["source"] == "self"

    mail = await mailbox.wait_for(lambda m: m["To"] == body["email"])
    assert mail["Subject"] == "Aktivieren Sie Ihr Konto"  # Accept-Language de-AT -> de
    assert mail["Content-Language"] == "de"
    token = activation_token_in(mail)

    activate = f"{service.base_url}/{tenant['apiKey']}/register/activate/{token}"
    async with http.put(activate) as response:
        assert response.status == 200
        approved = await response.json()
    assert approved["id"] == user["id"] and approved["isApproved"] is True
    activated = await next_event(events_queue, "user.activated")
    assert json.loads(activated.body)["data"]["userId"] == user["id"]

    async with http.put(activate) as response:
        assert response.status == 409
    async with http.put(activate + "x") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_duplicate_email_in_other_letter_case_is_409(service, tenant, http):
    first = new_body()
    async with http.post(register_url(service, tenant), json=first) as response:
        assert response.status == 200
    again = new_body(email=first["email"].upper().replace("@EXAMPLE.COM", "@Example.com"))
    async with http.post(register_url(service, tenant), json=again) as response:
        assert response.status == 409
        problem = await response.json()
    assert response.content_type == "application/problem+json"
    assert problem["type"].endswith("/email-taken") and problem["status"] == 409


async def test_respond_async_returns_202_then_status_resource_shows_the_user(service, tenant, http):
    body = new_body()
    async with http.post(
        register_url(service, tenant), json=body, headers={"Prefer": "respond-async"}
    ) as response:
        assert response.status == 202
        pending = await response.json()
        location = response.headers["Location"]
    assert pending["status"] == "pending" and pending["_links"]["self"]["href"] == location
    assert location.endswith(pending["requestId"])

    for _ in range(200):
        async with http.get(service.base_url + location) as response:
            if response.status == 200:
                user = await response.json()
                break
            assert response.status == 202
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the registration never completed")
    assert user["email"] == body["email"]


async def test_idempotent_retry_creates_one_user(service, tenant, http, mailbox, e2e_pool):
    body = new_body()
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    answers = []
    for _ in range(3):
        async with http.post(register_url(service, tenant), json=body, headers=headers) as r:
            assert r.status == 200
            answers.append(await r.json())
    assert len({a["id"] for a in answers}) == 1
    count = await e2e_pool.fetchval("SELECT count(*) FROM users WHERE email = $1", body["email"])
    assert count == 1
    await mailbox.wait_for(lambda m: m["To"] == body["email"])
    await asyncio.sleep(0.5)  # a second email would have arrived by now
    assert len(mailbox.received(lambda m: m["To"] == body["email"])) == 1

    changed = {**body, "userName": body["userName"] + "x"}
    async with http.post(register_url(service, tenant), json=changed, headers=headers) as r:
        assert r.status == 422


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"email": "not-an-address"}, 400),
        ({"password": "short"}, 400),
        ({"password": "        ", "confirmPassword": "        "}, 400),
        ({"confirmPassword": "something else entirely"}, 400),
        ({"userName": "a b"}, 400),
        ({"activationUrl": "https://evil.example.net/{activationToken}"}, 400),
        ({"activationUrl": "https://app.example.com/activate"}, 400),
        ({"email": 42}, 400),
        ({"unexpected": "field"}, 400),
    ],
)
async def test_invalid_bodies_get_400_problem(service, tenant, http, change, status):
    async with http.post(register_url(service, tenant), json=new_body(**change)) as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        problem = await response.json()
    assert problem["status"] == status and problem["title"]


async def test_transport_errors_401_403_413_415_and_not_json(service, tenant, http):
    url = register_url(service, tenant)
    async with http.post(f"{service.base_url}/wrong-key/register", json=new_body()) as r:
        assert r.status == 401
    closed = service.cli(
        "tenant",
        "create",
        "Closed",
        "--no-registration",
        "--activation-url-prefix",
        "https://app.example.com/",
    )
    async with http.post(register_url(service, closed), json=new_body()) as r:
        assert r.status == 403
    async with http.post(
        url, data="x" * (65 * 1024), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 413
    async with http.post(
        url, data="email=a", headers={"Content-Type": "application/x-www-form-urlencoded"}
    ) as r:
        assert r.status == 415
    async with http.post(url, data="{not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
    async with http.post(url, data="[1, 2]", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
    for response_type in ("application/problem+json",):
        assert r.content_type == response_type


async def test_pow_captcha_solution_is_accepted_once(service, http):
    tenant = service.cli(
        "tenant",
        "create",
        "Captcha",
        "--captcha",
        "pow",
        "--activation-url-prefix",
        "https://app.example.com/",
    )
    async with http.get(f"{service.base_url}/{tenant['apiKey']}/captcha/challenge") as r:
        assert r.status == 200
        challenge = await r.json()
    assert set(challenge) == {"algorithm", "challenge", "maxnumber", "salt", "signature"}
    payload = await asyncio.to_thread(solve_pow, challenge)
    solved = {"challengeIdentifier": challenge["challenge"], "challengeResponse": payload}

    async with http.post(register_url(service, tenant), json=new_body(**solved)) as r:
        assert r.status == 200
    async with http.post(register_url(service, tenant), json=new_body(**solved)) as r:
        assert r.status == 400
        assert (await r.json())["type"].endswith("/captcha")
    async with http.post(register_url(service, tenant), json=new_body()) as r:
        assert r.status == 400


async def test_no_plaintext_password_in_messages_rows_or_logs(
    service, tenant, http, e2e_pool, mailbox, events_queue, commands_queue
):
    secret = f"Plaintext-{uuid.uuid4().hex}"
    body = new_body(password=secret)
    async with http.post(register_url(service, tenant), json=body) as r:
        assert r.status == 200
    await mailbox.wait_for(lambda m: m["To"] == body["email"])
    await asyncio.sleep(0.5)  # let the relay publish and the workers log

    dump = await e2e_pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    for row in dump:
        table = row["table_name"]
        text = await e2e_pool.fetchval(
            f"SELECT coalesce(string_agg(t::text, '\n'), '') FROM \"{table}\" t"
        )
        assert secret not in text, f"plaintext password found in table {table}"
    assert secret not in service.log_text()
    for message in mailbox.received(lambda m: True):
        assert secret not in message.as_string()

    seen = set()
    for queue in (events_queue, commands_queue):
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            seen.add((message.exchange.rsplit(".", 1)[1], message.routing_key))
            assert secret.encode() not in message.body
    assert {
        ("commands", "register.requested"),
        ("commands", "email.requested"),
        ("events", "user.registered"),
    } <= seen
