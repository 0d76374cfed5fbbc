"""Organization invitations end to end (Blynk-compatible API, hosted accept page)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest

from service import tenants
from tests.conftest import text_of
from tests.e2e.conftest import next_event

pytestmark = pytest.mark.e2e
REGISTER = "/api/v1/organization/users/register"
INVITE = "/api/v1/organization/users/invite"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_email() -> str:
    return f"invitee-{uuid.uuid4().hex[:10]}@example.com"


def invitation_token(message) -> str:
    match = re.search(r"/invitations/([A-Za-z0-9_\\-]+)", text_of(message))
    assert match, "invitation link missing from the email"
    return match.group(1)


async def invite(http, service, org, email: str, **fields) -> int:
    body = {"email": email, **fields}
    async with http.post(service.base_url + REGISTER, json=body, headers=bearer(org["token"])) as r:
        return r.status


async def test_blynk_curl_body_gets_204_and_an_english_invitation_email(
    service, org, http, mailbox, events_queue
):
    # The request body from the Blynk documentation, verbatim.
    async with http.post(
        service.base_url + REGISTER,
        data='{"email":"test@example.com","locale":"en_US"}',
        headers={**bearer(org["token"]), "Content-Type": "application/json"},
    ) as response:
        assert response.status == 204
        assert await response.read() == b""
    mail = await mailbox.wait_for(lambda m: m["To"] == "test@example.com")
    assert mail["Subject"] == "You are invited to join Acme Org"
    assert mail["Content-Language"] == "en"
    assert f"{service.base_url}/invitations/" in text_of(mail)
    sent = json.loads((await next_event(events_queue, "invitation.sent")).body)
    assert sent["type"] == "registrar.invitation.sent.v1"
    assert sent["data"]["email"] == "test@example.com" and sent["data"]["locale"] == "en_US"


async def test_german_locale_gets_the_german_email(service, org, http, mailbox):
    email = new_email()
    assert await invite(http, service, org, email, locale="de_DE") == 204
    mail = await mailbox.wait_for(lambda m: m["To"] == email)
    assert mail["Subject"] == "Sie sind eingeladen, Acme Org beizutreten"
    assert mail["Content-Language"] == "de"
    assert "Einladung" in text_of(mail)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-token"}, 401),
        ({"Authorization": "Basic x"}, 401),
    ],
)
async def test_missing_or_wrong_token_is_401(service, http, headers, status):
    async with http.post(
        service.base_url + REGISTER, json={"email": new_email()}, headers=headers
    ) as r:
        assert r.status == status
        assert r.content_type == "application/problem+json"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_token_without_the_scope_is_403_and_a_revoked_token_401(service, org, http, e2e_pool):
    _, unscoped = await tenants.create_access_token(
        e2e_pool, tenant_id=uuid.UUID(org["id"]), scopes=["users:read"]
    )
    async with http.post(
        service.base_url + REGISTER, json={"email": new_email()}, headers=bearer(unscoped)
    ) as r:
        assert r.status == 403
        assert (await r.json())["type"].endswith("/forbidden")

    revoked = service.cli("token", "create", "--tenant", org["id"], "--scope", "users:invite")
    assert await invite(http, service, {"token": revoked["token"]}, new_email()) == 204
    assert service.cli("token", "revoke", revoked["id"]) == {"id": revoked["id"], "revoked": True}
    assert await invite(http, service, {"token": revoked["token"]}, new_email()) == 401


@pytest.mark.parametrize(
    "body",
    [
        {"email": "x@example.com", "locale": "xx_YY"},
        {"email": "x@example.com", "locale": "en-US"},
        {"email": "x@example.com", "locale": 5},
        {"email": "not an email"},
        {"locale": "en_US"},
        {"email": "x@example.com", "extra": 1},
    ],
)
async def test_bad_bodies_are_400(service, org, http, body):
    async with http.post(service.base_url + REGISTER, json=body, headers=bearer(org["token"])) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"


async def test_413_and_415(service, org, http):
    async with http.post(
        service.base_url + REGISTER,
        data="x" * 70_000,
        headers={**bearer(org["token"]), "Content-Type": "application/json"},
    ) as r:
        assert r.status == 413
    async with http.post(
        service.base_url + REGISTER,
        data="email=a@b.c",
        headers={**bearer(org["token"]), "Content-Type": "text/plain"},
    ) as r:
        assert r.status == 415


async def test_reinvite_revokes_the_first_link(service, org, http, mailbox):
    email = new_email()
    assert await invite(http, service, org, email) == 204
    first = invitation_token(await mailbox.wait_for(lambda m: m["To"] == email))
    assert await invite(http, service, org, email) == 204
    for _ in range(200):
        mails = mailbox.received(lambda m: m["To"] == email)
        if len(mails) == 2:
            break
        await asyncio.sleep(0.05)
    second = invitation_token(mails[1])
    assert first != second
    async with http.get(f"{service.base_url}/invitations/{first}") as r:
        assert r.status == 410
    async with http.get(f"{service.base_url}/invitations/{second}") as r:
        assert r.status == 200


async def test_an_existing_member_gets_no_invitation(service, org, http, mailbox):
    email = new_email()
    assert await invite(http, service, org, email) == 204
    token = invitation_token(await mailbox.wait_for(lambda m: m["To"] == email))
    accept = f"{service.base_url}/api/v1/invitations/{token}/accept"
    body = {"name": "Member", "password": "member password", "confirmPassword": "member password"}
    async with http.post(accept, json=body) as r:
        assert r.status == 200
    assert await invite(http, service, org, email) == 204  # still 204: no enumeration
    await asyncio.sleep(1.5)  # the worker has long decided by now
    invitations = mailbox.received(lambda m: m["To"] == email and "invited" in m["Subject"])
    assert len(invitations) == 1
    # What the member did get after accepting is the welcome email.
    assert mailbox.received(lambda m: m["To"] == email and m["Subject"] == "Welcome to Acme Org")


async def test_accept_via_json_creates_an_approved_user_with_the_invited_role_once(
    service, org, http, mailbox, events_queue, e2e_pool
):
    email = new_email()
    role_id = await e2e_pool.fetchval(
        "INSERT INTO roles (id, tenant_id, name, description, number) "
        "SELECT $1, $2, $3, 'ops', max(number) + 1 FROM roles WHERE tenant_id = $2 RETURNING id",
        uuid.uuid4(),
        uuid.UUID(org["id"]),
        f"Operator-{uuid.uuid4().hex[:6]}",
    )
    async with http.post(
        service.base_url + INVITE,
        headers=bearer(org["token"]),
        json={"email": email, "name": "Olga", "roleId": str(role_id)},
    ) as r:
        assert r.status == 204
    token = invitation_token(await mailbox.wait_for(lambda m: m["To"] == email))

    async with http.get(f"{service.base_url}/invitations/{token}") as r:
        assert r.status == 200 and 'value="Olga"' in await r.text()  # name prefilled
    async with http.get(f"{service.base_url}/invitations/{token}") as r:
        assert r.status == 200  # viewing never consumes the token

    accept = f"{service.base_url}/api/v1/invitations/{token}/accept"
    body = {"name": "Olga O.", "password": "olga's password", "confirmPassword": "olga's password"}
    async with http.post(accept, json=body) as r:
        assert r.status == 200
        user = await r.json()
    assert user["email"] == email and user["name"] == "Olga O." and user["isApproved"] is True
    assert [role["id"] for role in user["roles"]] == [str(role_id)]

    accepted = json.loads((await next_event(events_queue, "invitation.accepted")).body)
    assert accepted["data"]["userId"] == user["id"]
    registered = json.loads((await next_event(events_queue, "user.registered")).body)
    assert (
        registered["data"]["source"] == "invitation" and registered["data"]["userId"] == user["id"]
    )

    async with http.post(accept, json=body) as r:
        assert r.status == 410  # single use
    async with http.get(f"{service.base_url}/invitations/{token}") as r:
        assert r.status == 410
    async with http.get(f"{service.base_url}/invitations/unknown-token") as r:
        assert r.status == 404


async def test_accept_via_form_shows_success_in_the_invitation_locale(
    service, org, http, mailbox, e2e_pool
):
    email = new_email()
    assert await invite(http, service, org, email, locale="de_AT") == 204
    token = invitation_token(await mailbox.wait_for(lambda m: m["To"] == email))
    page = f"{service.base_url}/invitations/{token}"
    async with http.get(page) as r:
        html = await r.text()
    assert '<html lang="de">' in html and "Passwort bestätigen" in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # no JS, no assets

    bad = {"name": "", "password": "short", "confirmPassword": "other"}
    async with http.post(page, data=bad) as r:
        assert r.status == 400
        html = await r.text()
    assert 'role="alert"' in html and "Bitte geben Sie Ihren Namen ein." in html

    good = {"name": "Dora", "password": "doras password", "confirmPassword": "doras password"}
    async with http.post(page, data=good) as r:
        assert r.status == 200
        assert "Ihr Konto ist bereit" in await r.text()
    row = await e2e_pool.fetchrow(
        "SELECT name, is_approved, source FROM users WHERE email = $1", email
    )
    assert dict(row) == {"name": "Dora", "is_approved": True, "source": "invitation"}
    async with http.post(page, data=good) as r:
        assert r.status == 410
