"""Baasic's SDKs add a trailing slash to many routes (`…/register/activate/{token}/`):
every Baasic-shaped route answers the same with and without it (SPEC §3), and the
metrics and logs name it as one route."""

from __future__ import annotations

import uuid

from service import metrics
from tests.gateway.test_limits import body, gateway_client

ASYNC = {"Prefer": "respond-async"}
BEARER = {"Authorization": "Bearer rgu_no-such-token"}


async def test_every_baasic_route_answers_with_a_trailing_slash(settings, api_key):
    client = await gateway_client(settings)
    try:
        created = await client.post(f"/{api_key}/register/", json=body(), headers=ASYNC)
        assert created.status == 202
        request_id = (await created.json())["requestId"]

        status = await client.get(f"/{api_key}/register/requests/{request_id}/")
        assert status.status in (200, 202)
        assert (await status.json()).get("requestId", request_id) == request_id

        # The handler's own 404 (problem type not-found), not the router's.
        activation = await client.put(f"/{api_key}/register/activate/{uuid.uuid4().hex}/")
        assert activation.status == 404
        assert (await activation.json())["type"].endswith("not-found")

        resend = await client.post(
            f"/{api_key}/register/resend/", json={"email": "nobody@example.com"}
        )
        assert resend.status == 204

        challenge = await client.get(f"/{api_key}/captcha/challenge/")
        assert challenge.status == 200
        assert set(await challenge.json()) >= {"algorithm", "challenge", "signature"}

        # The account life cycle (SPEC §10): each handler's own answer, not the router's.
        wrong = {"grant_type": "password", "username": "nobody", "password": "wrong-pass"}
        login = await client.post(f"/{api_key}/login/", data=wrong)
        assert login.status == 401 and (await login.json())["type"].endswith("login-failed")
        for method in ("GET", "PUT", "DELETE"):
            answer = await client.request(
                method, f"/{api_key}/login/", json={"token": "rgu_gone"}, headers=BEARER
            )
            assert answer.status in (204, 401), method  # logout of a dead token is 204
        recover = await client.post(
            f"/{api_key}/recover-password/",
            json={
                "userName": "nobody",
                "recoverUrl": "https://app.example.com/r/{passwordRecoveryToken}",
            },
        )
        assert recover.status == 201
        reset = await client.put(
            f"/{api_key}/recover-password/",
            json={"passwordRecoveryToken": "unknown", "newPassword": "long enough"},
        )
        assert reset.status == 404
        change = await client.put(
            f"/{api_key}/users/nobody/change-password/",
            json={"newPassword": "long enough"},
            headers=BEARER,
        )
        assert change.status == 401
        leave = await client.delete(f"/{api_key}/users/me/", json={"password": "x"}, headers=BEARER)
        assert leave.status == 401
    finally:
        await client.close()


async def test_a_trailing_slash_is_the_same_route_in_the_metrics(settings, api_key):
    counter = metrics.HTTP_REQUESTS.labels("POST", "/{apiKey}/register", "202")
    before = counter._value.get()
    client = await gateway_client(settings)
    try:
        for path in (f"/{api_key}/register", f"/{api_key}/register/"):
            assert (await client.post(path, json=body(), headers=ASYNC)).status == 202
    finally:
        await client.close()
    assert counter._value.get() == before + 2
