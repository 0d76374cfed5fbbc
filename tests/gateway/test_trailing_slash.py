"""Baasic's SDKs add a trailing slash to many routes (`…/register/activate/{token}/`):
every Baasic-shaped route answers the same with and without it (SPEC §3), and the
metrics and logs name it as one route."""

from __future__ import annotations

import uuid

from service import metrics
from tests.gateway.test_limits import body, gateway_client

ASYNC = {"Prefer": "respond-async"}


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
