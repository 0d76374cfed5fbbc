"""The account life cycle end to end (SPEC §10), against the real gateway, workers,
PostgreSQL, RabbitMQ and an SMTP server: register → activate (signed in) → login →
refresh → logout → recover → reset → change password → delete → the address is free."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import aio_pika
import pytest

from schemas.events import AccountDeleteRequested, PasswordChangeRequested, envelope
from service.sealing import seal
from tests.conftest import text_of
from tests.e2e.conftest import next_event
from tests.e2e.test_operations import sample
from tests.e2e.test_self_registration import activation_token_in, new_body, register_url

pytestmark = pytest.mark.e2e
RECOVER_URL = "https://app.example.com/recover?token={passwordRecoveryToken}"
TOKEN_FIELDS = {"access_token", "token_type", "expires_in"}


def url(service, tenant, path: str) -> str:
    return f"{service.base_url}/{tenant['apiKey']}/{path}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(http, service, tenant, username: str, password: str, **query: str):
    async with http.post(
        url(service, tenant, "login"),
        params=query,
        data={"grant_type": "password", "username": username, "password": password},
    ) as response:
        return response.status, await response.json()


async def me(http, service, tenant, token: str) -> int:
    async with http.get(url(service, tenant, "login"), headers=bearer(token)) as response:
        return response.status


async def registered_and_activated(http, service, tenant, mailbox, **overrides: str):
    """A new user, activated: (registration body, activation answer)."""
    body = new_body(**overrides)
    async with http.post(register_url(service, tenant), json=body) as response:
        assert response.status == 200, await response.text()
    mail = await mailbox.wait_for(lambda m: m["To"] == body["email"])
    token = activation_token_in(mail)
    async with http.put(url(service, tenant, f"register/activate/{token}/")) as response:
        assert response.status == 200, await response.text()
        return body, await response.json()


def recovery_token_in(message) -> str:
    match = re.search(
        r"https://app\.example\.com/recover\?token=([A-Za-z0-9_\-]+)", text_of(message)
    )
    assert match, "recovery link missing from the email"
    return match.group(1)


async def recover(http, service, tenant, user_name: str, **fields: str) -> int:
    body = {"userName": user_name, "recoverUrl": RECOVER_URL} | fields
    async with http.post(url(service, tenant, "recover-password"), json=body) as response:
        return response.status


async def recovery_mail(mailbox, address: str, *, after: int = 0):
    """The (after+1)-th recovery email to `address`."""

    def is_recovery(message) -> bool:
        return message["To"] == address and "/recover?token=" in text_of(message)

    for _ in range(400):
        found = mailbox.received(is_recovery)
        if len(found) > after:
            return found[after]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no recovery email #{after + 1} to {address}")


async def test_the_whole_life_cycle(service, tenant, http, mailbox, events_queue):
    body, activated = await registered_and_activated(http, service, tenant, mailbox)
    name, email, password = body["userName"], body["email"], body["password"]

    # Activation signs the user in: the user's fields and Baasic's token fields.
    assert activated["isApproved"] is True and activated["userName"] == name
    assert set(activated) >= TOKEN_FIELDS and activated["token_type"] == "bearer"
    assert await me(http, service, tenant, activated["access_token"]) == 200

    # Login by userName (sliding) and by email.
    status, grant = await login(http, service, tenant, name, password, options="sliding")
    assert status == 201 and grant["token_type"] == "bearer" and grant["expires_in"] > 0
    assert grant["sliding_window"] == grant["expires_in"]
    status, by_email = await login(http, service, tenant, email.upper(), password)
    assert status == 201 and "sliding_window" not in by_email
    async with http.get(url(service, tenant, "login"), headers=bearer(grant["access_token"])) as r:
        assert r.status == 200
        current = await r.json()
    assert current["userName"] == name and current["email"] == email

    # Refresh: a new token; the old one stops working.
    async with http.put(
        url(service, tenant, "login"), json={"token": grant["access_token"], "type": "bearer"}
    ) as r:
        assert r.status == 200
        refreshed = await r.json()
    assert refreshed["access_token"] != grant["access_token"]
    assert await me(http, service, tenant, grant["access_token"]) == 401
    assert await me(http, service, tenant, refreshed["access_token"]) == 200

    # Logout: the token in the body, or (as Baasic's SDK documents the call, with an
    # empty body) the bearer.
    async with http.delete(
        url(service, tenant, "login"), json={}, headers=bearer(refreshed["access_token"])
    ) as r:
        assert r.status == 204
    assert await me(http, service, tenant, refreshed["access_token"]) == 401

    # Recover and reset: old password and every old token refused afterwards.
    assert await recover(http, service, tenant, email) == 201
    token = recovery_token_in(await recovery_mail(mailbox, email))
    new_password = f"recovered-{uuid.uuid4().hex[:8]}"
    async with http.put(
        url(service, tenant, "recover-password"),
        json={"passwordRecoveryToken": token, "newPassword": new_password},
    ) as r:
        assert r.status == 200, await r.text()
    async with http.put(
        url(service, tenant, "recover-password"),
        json={"passwordRecoveryToken": token, "newPassword": "another-one-1"},
    ) as r:
        assert r.status == 409  # single use
    assert (await login(http, service, tenant, name, password))[0] == 401
    assert await me(http, service, tenant, by_email["access_token"]) == 401
    assert await me(http, service, tenant, activated["access_token"]) == 401
    changed = await next_event(events_queue, "user.password_changed")
    assert json.loads(changed.body)["data"]["via"] == "recovery"
    await mailbox.wait_for(lambda m: m["To"] == email and "changed" in m["Subject"].lower())

    # Change password with the user's own token and the old password.
    status, grant = await login(http, service, tenant, name, new_password)
    assert status == 201
    newest = f"changed-{uuid.uuid4().hex[:8]}"
    async with http.put(
        url(service, tenant, f"users/{name}/change-password"),
        json={"oldPassword": new_password, "newPassword": newest},
        headers=bearer(grant["access_token"]),
    ) as r:
        assert r.status == 200, await r.text()
    assert await me(http, service, tenant, grant["access_token"]) == 401  # sessions end
    assert (await login(http, service, tenant, name, new_password))[0] == 401
    status, grant = await login(http, service, tenant, name, newest)
    assert status == 201

    # Delete the account: the password is asked again; then everything is gone.
    async with http.delete(
        url(service, tenant, "users/me"),
        json={"password": "not-the-password"},
        headers=bearer(grant["access_token"]),
    ) as r:
        assert r.status == 403
    async with http.delete(
        url(service, tenant, "users/me"),
        json={"password": newest},
        headers=bearer(grant["access_token"]),
    ) as r:
        assert r.status == 204, await r.text()
    deleted = json.loads((await next_event(events_queue, "user.deleted")).body)["data"]
    assert deleted["userId"] == activated["id"] and deleted["by"] == "self"
    assert await me(http, service, tenant, grant["access_token"]) == 401
    assert (await login(http, service, tenant, name, newest))[0] == 401

    # The email and the userName are free again.
    again = new_body(email=email, userName=name)
    async with http.post(register_url(service, tenant), json=again) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["id"] != activated["id"]


async def test_every_login_failure_looks_the_same(service, tenant, http, mailbox):
    """Unknown user, wrong password, not yet activated, locked: same status, same body."""
    active, _ = await registered_and_activated(http, service, tenant, mailbox)
    pending = new_body()
    async with http.post(register_url(service, tenant), json=pending) as r:
        assert r.status == 200
    locked, _ = await registered_and_activated(http, service, tenant, mailbox)
    for _ in range(5):
        await login(http, service, tenant, locked["userName"], "wrong-password")

    async with http.get(service.base_url + "/metrics") as r:
        unknown_before = sample(
            await r.text(), "registrar_password_checks_total", outcome="unknown"
        )
    answers = {
        "unknown": await login(http, service, tenant, f"nobody-{uuid.uuid4().hex[:6]}", "x" * 9),
        "wrong password": await login(http, service, tenant, active["userName"], "wrong-pass"),
        "not activated": await login(
            http, service, tenant, pending["userName"], pending["password"]
        ),
        "locked": await login(http, service, tenant, locked["userName"], locked["password"]),
    }
    statuses = {why: status for why, (status, _) in answers.items()}
    assert set(statuses.values()) == {401}, statuses
    bodies = {json.dumps(body, sort_keys=True) for _, body in answers.values()}
    assert len(bodies) == 1, bodies  # not one key or word differs
    # The unknown name was checked against the dummy hash (as long as a real check).
    async with http.get(service.base_url + "/metrics") as r:
        unknown_after = sample(await r.text(), "registrar_password_checks_total", outcome="unknown")
    assert unknown_after == unknown_before + 1


async def test_lock_out_after_failures_is_announced_mailed_and_lifted_by_a_reset(
    service, tenant, http, mailbox, events_queue
):
    body, activated = await registered_and_activated(http, service, tenant, mailbox)
    for _ in range(5):
        assert (await login(http, service, tenant, body["userName"], "wrong-password"))[0] == 401
    assert (await login(http, service, tenant, body["userName"], body["password"]))[0] == 401

    locked = json.loads((await next_event(events_queue, "user.locked")).body)["data"]
    assert locked["userId"] == activated["id"] and locked["reason"] == "failed_logins"
    assert locked["lockedUntil"] is not None
    await mailbox.wait_for(lambda m: m["To"] == body["email"] and "locked" in text_of(m).lower())

    # A password reset lifts the lock-out.
    assert await recover(http, service, tenant, body["userName"]) == 201
    token = recovery_token_in(await recovery_mail(mailbox, body["email"]))
    async with http.put(
        url(service, tenant, "recover-password"),
        json={"passwordRecoveryToken": token, "newPassword": "unlocked-again-1"},
    ) as r:
        assert r.status == 200
    assert (await login(http, service, tenant, body["userName"], "unlocked-again-1"))[0] == 201


async def test_login_attempts_for_one_name_are_rate_limited(service, tenant, http):
    name = f"ghost-{uuid.uuid4().hex[:6]}"  # limits hold for unknown names too
    statuses = [(await login(http, service, tenant, name, "wrong-password"))[0] for _ in range(12)]
    assert statuses[0] == 401 and statuses[-1] == 429
    async with http.post(
        url(service, tenant, "login"),
        data={"grant_type": "password", "username": name, "password": "x"},
    ) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1


async def test_recovery_answers_201_for_anyone_and_mails_only_owners_once(
    service, tenant, http, mailbox
):
    body, _ = await registered_and_activated(http, service, tenant, mailbox)
    assert await recover(http, service, tenant, f"nobody-{uuid.uuid4().hex[:6]}") == 201
    assert await recover(http, service, tenant, body["userName"]) == 201
    assert await recover(http, service, tenant, body["email"]) == 201  # throttled
    await recovery_mail(mailbox, body["email"])
    # The worker has handled both commands once the throttled one's successor is mailed
    # elsewhere: give it a marker request to a second user and wait for that mail.
    other, _ = await registered_and_activated(http, service, tenant, mailbox)
    assert await recover(http, service, tenant, other["userName"]) == 201
    await recovery_mail(mailbox, other["email"])
    assert (
        len(mailbox.received(lambda m: m["To"] == body["email"] and "/recover?" in text_of(m))) == 1
    )


@pytest.mark.parametrize(
    ("recover_url", "problem"),
    [
        ("https://evil.example.net/recover?token={passwordRecoveryToken}", "allowed prefix"),
        ("https://app.example.com/recover", "{passwordRecoveryToken}"),
        ("https://app.example.com/r/{activationToken}", "{passwordRecoveryToken}"),
    ],
)
async def test_recover_url_must_be_under_the_tenants_prefixes(
    service, tenant, http, recover_url, problem
):
    async with http.post(
        url(service, tenant, "recover-password"),
        json={"userName": "anyone", "recoverUrl": recover_url},
    ) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
        assert problem in json.dumps(await r.json())


async def test_reset_with_unknown_token_is_404_and_weak_password_400(service, tenant, http):
    async with http.put(
        url(service, tenant, "recover-password"),
        json={"passwordRecoveryToken": "no-such-token", "newPassword": "long-enough-1"},
    ) as r:
        assert r.status == 404
    async with http.put(
        url(service, tenant, "recover-password"),
        json={"passwordRecoveryToken": "no-such-token", "newPassword": "short"},
    ) as r:
        assert r.status == 400


async def test_change_password_rules(service, tenant, http, mailbox):
    body, _ = await registered_and_activated(http, service, tenant, mailbox)
    other, _ = await registered_and_activated(http, service, tenant, mailbox)
    _, grant = await login(http, service, tenant, body["userName"], body["password"])
    change = url(service, tenant, f"users/{body['userName']}/change-password")
    own = bearer(grant["access_token"])

    async with http.put(change, json={"newPassword": "brand-new-pw"}, headers=own) as r:
        assert r.status == 400  # oldPassword required for one's own
    async with http.put(
        change, json={"newPassword": "brand-new-pw", "oldPassword": "wrong-old"}, headers=own
    ) as r:
        assert r.status == 403
    async with http.put(
        url(service, tenant, f"users/{other['userName']}/change-password"),
        json={"newPassword": "brand-new-pw", "oldPassword": body["password"]},
        headers=own,
    ) as r:
        assert r.status == 403  # not someone else's
    async with http.put(change, json={"newPassword": "brand-new-pw"}) as r:
        assert r.status == 401

    # A tenant token with users:write may, without the old password; without it, not.
    reader = service.cli("token", "create", "--tenant", tenant["id"], "--scope", "users:read")
    writer = service.cli("token", "create", "--tenant", tenant["id"], "--scope", "users:write")
    target = url(service, tenant, f"users/{other['userName']}/change-password")
    async with http.put(
        target, json={"newPassword": "set-by-admin-1"}, headers=bearer(reader["token"])
    ) as r:
        assert r.status == 403
    async with http.put(
        target,
        json={"newPassword": "set-by-admin-1", "sendMailNotification": False},
        headers=bearer(writer["token"]),
    ) as r:
        assert r.status == 200, await r.text()
    assert (await login(http, service, tenant, other["userName"], "set-by-admin-1"))[0] == 201
    async with http.put(
        url(service, tenant, "users/nobody-here/change-password"),
        json={"newPassword": "set-by-admin-1"},
        headers=bearer(writer["token"]),
    ) as r:
        assert r.status == 404


async def test_account_commands_forged_on_the_broker_change_nothing(
    service, tenant, http, mailbox, amqp_connection, e2e_settings, e2e_pool
):
    """Whoever can publish on the commands exchange still cannot delete an account or set
    a password: the worker acts only on authorizations the gateway recorded."""
    body, activated = await registered_and_activated(http, service, tenant, mailbox)
    user_id, tenant_id = uuid.UUID(activated["id"]), uuid.UUID(tenant["id"])
    channel = await amqp_connection.channel()
    exchange = await channel.get_exchange(f"{e2e_settings.amqp_prefix}.commands")
    forged = [
        ("account.delete.requested", AccountDeleteRequested(user_id=user_id, tenant_id=tenant_id)),
        (
            "password.change.requested",
            PasswordChangeRequested(
                user_id=user_id,
                tenant_id=tenant_id,
                sealed_password=seal("attacker-chosen-1", e2e_settings.seal_public_key),
                by="admin",
            ),
        ),
    ]
    ids = []
    for routing_key, data in forged:
        event = envelope(data)
        ids.append(event.id)
        await exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=str(event.id),
                content_type="application/cloudevents+json",
            ),
            routing_key=routing_key,
        )
    await channel.close()
    # The worker handled both (it records every message it handled), and changed nothing.
    for _ in range(400):
        handled = await e2e_pool.fetchval(
            "SELECT count(*) FROM processed_messages WHERE message_id = ANY($1::uuid[])", ids
        )
        if handled == len(ids):
            break
        await asyncio.sleep(0.05)
    assert handled == len(ids)
    assert (await login(http, service, tenant, body["userName"], body["password"]))[0] == 201
    assert (await login(http, service, tenant, body["userName"], "attacker-chosen-1"))[0] == 401
