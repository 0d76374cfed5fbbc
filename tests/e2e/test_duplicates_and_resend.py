"""--duplicates silent and activation resend, end to end."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.test_self_registration import activation_token_in, new_body, register_url

pytestmark = pytest.mark.e2e


async def test_silent_tenant_answers_a_taken_email_like_a_new_one_and_mails_the_owner(
    service, http, mailbox
):
    tenant = service.cli(
        "tenant",
        "create",
        "Quiet",
        "--duplicates",
        "silent",
        "--default-locale",
        "fr",
        "--activation-url-prefix",
        "https://app.example.com/",
    )
    first = new_body()
    async with http.post(register_url(service, tenant), json=first) as r:
        assert r.status == 200
        original = await r.json()
    await mailbox.wait_for(lambda m: m["To"] == first["email"])

    second = new_body(email=first["email"].upper())
    async with http.post(register_url(service, tenant), json=second) as r:
        assert r.status == 200  # not 409: the answer must not reveal that the address exists
        stand_in = await r.json()
    assert set(stand_in) == set(original)
    assert stand_in["id"] != original["id"] and stand_in["userName"] == second["userName"]
    assert stand_in["isApproved"] is False and stand_in["roles"] == original["roles"]

    async with http.get(service.base_url + stand_in["_links"]["self"]["href"]) as r:
        assert r.status == 200 and (await r.json())["id"] == stand_in["id"]  # stable

    # The owner is told instead, in the owner's language (the tenant default here: fr).
    notice = await mailbox.wait_for(
        lambda m: m["To"] == first["email"] and m["Subject"] != "Activez votre compte"
    )
    assert notice["Content-Language"] == "fr"
    assert notice["Subject"] != "Someone tried to register with your email address"
    await asyncio.sleep(0.5)
    assert len(mailbox.received(lambda m: m["To"].lower() == first["email"].lower())) == 2


def shape(status: int, headers, body: dict) -> tuple:
    """What a prober could compare: status, header names and body keys (values differ)."""
    return status, sorted({name.lower() for name in headers}), sorted(body)


async def decided(http, url: str) -> tuple:
    for _ in range(200):
        async with http.get(url) as r:
            if r.status != 202:
                return shape(r.status, r.headers, await r.json())
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} still pending")


@pytest.mark.parametrize("prefer", [None, "respond-async"])
async def test_silent_tenant_answers_a_taken_email_or_user_name_exactly_like_a_new_one(
    service, http, mailbox, prefer
):
    tenant = service.cli(
        "tenant",
        "create",
        "Hush",
        "--duplicates",
        "silent",
        "--default-locale",
        "de",
        "--activation-url-prefix",
        "https://app.example.com/",
    )
    headers = {"Prefer": prefer} if prefer else {}
    owner = new_body()
    async with http.post(register_url(service, tenant), json=owner) as r:
        assert r.status == 200
    await mailbox.wait_for(lambda m: m["To"] == owner["email"])

    answers = {}
    bodies = {
        "fresh": new_body(),
        "email_taken": new_body(email=owner["email"]),
        "username_taken": new_body(userName=owner["userName"].upper()),
    }
    for case, body in bodies.items():
        async with http.post(register_url(service, tenant), json=body, headers=headers) as r:
            answers[case] = shape(r.status, r.headers, await r.json())
            location = r.headers.get("Location")
        if prefer:  # the status resource, once decided, must not tell either
            answers[case + "_status"] = await decided(http, service.base_url + location)
    assert answers["fresh"][0] == (202 if prefer else 200)
    assert answers["email_taken"] == answers["fresh"]
    assert answers["username_taken"] == answers["fresh"]
    if prefer:
        assert answers["fresh_status"][0] == 200
        assert answers["email_taken_status"] == answers["fresh_status"]
        assert answers["username_taken_status"] == answers["fresh_status"]

    # The address that tried a taken userName learns it by mail, in its language.
    notice = await mailbox.wait_for(lambda m: m["To"] == bodies["username_taken"]["email"])
    assert notice["Subject"] == "Dieser Benutzername ist vergeben"
    assert owner["userName"].upper() in notice.get_body(("plain",)).get_content()
    await mailbox.wait_for(
        lambda m: m["To"] == owner["email"] and m["Subject"].startswith("Jemand")
    )


async def test_conflict_tenant_still_answers_409(service, tenant, http):
    body = new_body()
    async with http.post(register_url(service, tenant), json=body) as r:
        assert r.status == 200
    async with http.post(register_url(service, tenant), json=new_body(email=body["email"])) as r:
        assert r.status == 409
    async with http.post(
        register_url(service, tenant), json=new_body(userName=body["userName"])
    ) as r:
        assert r.status == 409


async def test_resend_mails_a_new_link_and_the_old_one_stops_working(
    service, tenant, http, mailbox
):
    body = new_body()
    async with http.post(
        register_url(service, tenant), json=body, headers={"Accept-Language": "es"}
    ) as r:
        assert r.status == 200
    first_mail = await mailbox.wait_for(lambda m: m["To"] == body["email"])
    old_token = activation_token_in(first_mail)

    resend = f"{service.base_url}/{tenant['apiKey']}/register/resend"
    async with http.post(resend, json={"email": body["email"]}) as r:
        assert r.status == 204
    for _ in range(200):
        mails = mailbox.received(lambda m: m["To"] == body["email"])
        if len(mails) == 2:
            break
        await asyncio.sleep(0.05)
    new_token = activation_token_in(mails[1])
    assert new_token != old_token
    assert mails[1]["Subject"] == first_mail["Subject"] == "Active su cuenta"  # user's locale

    activate = f"{service.base_url}/{tenant['apiKey']}/register/activate/"
    async with http.put(activate + old_token) as r:
        assert r.status == 404
    async with http.put(activate + new_token) as r:
        assert r.status == 200

    # Approved users and unknown addresses get 204 too, and no email.
    for email in (body["email"], "nobody-here@example.com"):
        async with http.post(resend, json={"email": email}) as r:
            assert r.status == 204
    await asyncio.sleep(1)
    assert len(mailbox.received(lambda m: m["To"] == body["email"])) == 2
    assert not mailbox.received(lambda m: m["To"] == "nobody-here@example.com")


async def test_resend_rejects_bad_bodies(service, tenant, http):
    resend = f"{service.base_url}/{tenant['apiKey']}/register/resend"
    async with http.post(resend, json={"email": "not an address"}) as r:
        assert r.status == 400
    async with http.post(
        f"{service.base_url}/bad-key/register/resend", json={"email": "a@b.co"}
    ) as r:
        assert r.status == 401


async def test_tenant_from_address_is_used(service, http, mailbox):
    tenant = service.cli(
        "tenant",
        "create",
        "Branded",
        "--mail-from",
        "Branded <hi@branded.example>",
        "--activation-url-prefix",
        "https://app.example.com/",
    )
    body = new_body()
    async with http.post(register_url(service, tenant), json=body) as r:
        assert r.status == 200
    mail = await mailbox.wait_for(lambda m: m["To"] == body["email"])
    assert mail["From"] == "Branded <hi@branded.example>"


async def test_ten_resends_for_one_address_mail_it_twice_in_all(service, tenant, http, mailbox):
    """REGISTRAR_RESEND_INTERVAL_S (default 60): the registration's mail, the first
    resend's, and nothing for the other nine; every answer is still 204."""
    body = new_body()
    async with http.post(register_url(service, tenant), json=body) as r:
        assert r.status == 200
    await mailbox.wait_for(lambda m: m["To"] == body["email"])
    resend = f"{service.base_url}/{tenant['apiKey']}/register/resend"
    statuses = []
    for _ in range(10):
        async with http.post(resend, json={"email": body["email"]}) as r:
            statuses.append(r.status)
    assert statuses == [204] * 10
    for _ in range(200):
        mails = mailbox.received(lambda m: m["To"] == body["email"])
        if len(mails) >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # the other nine would have arrived by now
    mails = mailbox.received(lambda m: m["To"] == body["email"])
    assert len(mails) == 2
    tokens = {activation_token_in(m) for m in mails}
    activate = f"{service.base_url}/{tenant['apiKey']}/register/activate/"
    async with http.put(activate + activation_token_in(mails[1])) as r:
        assert r.status == 200 and len(tokens) == 2  # the mailed link is the live one
