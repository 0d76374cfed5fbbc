"""The webhook API in-process (service/gateway/webhooks.py): tenant tokens with
webhooks:manage, the tenant taken from the token, destinations checked, never a secret
shown twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from schemas.webhooks import WebhookCreated, WebhookEndpoint, WebhookList, WebhookReplayed
from service import tenants
from tests.gateway.test_limits import gateway_client

URL = "https://hooks.example.com/registrar"


async def _token(pool, tenant_id: uuid.UUID, *scopes: str) -> dict[str, str]:
    _id, token = await tenants.create_access_token(pool, tenant_id=tenant_id, scopes=list(scopes))
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def org(pool) -> tenants.Tenant:
    tenant, _key = await tenants.create_tenant(
        pool, name=f"hooks-{uuid.uuid4().hex[:6]}", activation_url_prefixes=[]
    )
    yield tenant
    await pool.execute("DELETE FROM webhook_endpoints WHERE tenant_id = $1", tenant.id)


@pytest.fixture
async def client(settings) -> AsyncIterator[TestClient]:
    client = await gateway_client(settings)
    yield client
    await client.close()


async def test_a_token_is_required_and_it_must_hold_webhooks_manage(client, pool, org) -> None:
    invite_only = await _token(pool, org.id, "users:invite")
    for method, path in (
        ("POST", "/api/v1/webhooks"),
        ("GET", "/api/v1/webhooks"),
        ("DELETE", f"/api/v1/webhooks/{uuid.uuid4()}"),
        ("POST", f"/api/v1/webhooks/{uuid.uuid4()}/replay"),
    ):
        response = await client.request(method, path, json={"url": URL})
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        response = await client.request(
            method, path, json={"url": URL}, headers={"Authorization": "Bearer nope"}
        )
        assert response.status == 401, path
        response = await client.request(method, path, json={"url": URL}, headers=invite_only)
        assert response.status == 403, path
        assert response.content_type == "application/problem+json"


async def test_create_list_replay_and_delete(client, pool, org) -> None:
    auth = await _token(pool, org.id, "webhooks:manage")
    response = await client.post(
        "/api/v1/webhooks", json={"url": URL, "events": ["user.registered"]}, headers=auth
    )
    assert response.status == 201
    created = await response.json()
    WebhookCreated.model_validate(created)  # the documented shape
    assert created["secret"].startswith("whsec_")
    assert created["tenantId"] == str(org.id)
    assert created["events"] == ["user.registered"]
    assert response.headers["Location"] == f"/api/v1/webhooks/{created['id']}"

    response = await client.get("/api/v1/webhooks", headers=auth)
    listed = await response.json()
    WebhookList.model_validate(listed)
    [shown] = listed["items"]
    assert "secret" not in shown and created["secret"] not in await response.text()
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    assert (shown["pending"], shown["parked"], shown["disabledAt"]) == (0, 0, None)
    WebhookEndpoint.model_validate(shown)

    response = await client.post(f"/api/v1/webhooks/{created['id']}/replay", headers=auth)
    assert response.status == 200
    assert WebhookReplayed.model_validate(await response.json()).replayed == 0

    response = await client.delete(f"/api/v1/webhooks/{created['id']}", headers=auth)
    assert response.status == 204
    response = await client.delete(f"/api/v1/webhooks/{created['id']}", headers=auth)
    assert response.status == 404
    assert (await (await client.get("/api/v1/webhooks", headers=auth)).json()) == {"items": []}


async def test_a_tenant_sees_and_touches_only_its_own_endpoints(client, pool, org) -> None:
    ours = await _token(pool, org.id, "webhooks:manage")
    other, _ = await tenants.create_tenant(
        pool, name=f"other-{uuid.uuid4().hex[:6]}", activation_url_prefixes=[]
    )
    theirs = await _token(pool, other.id, "webhooks:manage")
    created = await (await client.post("/api/v1/webhooks", json={"url": URL}, headers=ours)).json()

    assert (await (await client.get("/api/v1/webhooks", headers=theirs)).json()) == {"items": []}
    for method, path in (
        ("DELETE", f"/api/v1/webhooks/{created['id']}"),
        ("POST", f"/api/v1/webhooks/{created['id']}/replay"),
        ("DELETE", "/api/v1/webhooks/not-a-uuid"),
    ):
        assert (await client.request(method, path, headers=theirs)).status == 404
    assert len((await (await client.get("/api/v1/webhooks", headers=ours)).json())["items"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://hooks.example.com/x"}, "url"),
        ({"url": "https://127.0.0.1/x"}, "url"),
        ({"url": "https://10.1.2.3/x"}, "url"),
        ({"url": "https://169.254.169.254/latest"}, "url"),
        ({"url": "https://[::1]/x"}, "url"),
        ({"url": "https://localhost/x"}, "url"),
        ({"url": "https://u:p@hooks.example.com/x"}, "url"),
        ({"url": URL, "events": ["register.requested"]}, "events"),
        ({"url": URL, "events": ["nope"]}, "events"),
        ({"url": URL, "events": "user.registered"}, "events"),
        ({"url": 5}, "url"),
        ({}, "url"),
        ({"url": URL, "secret": "mine"}, "secret"),
    ],
)
async def test_bad_destinations_and_bodies_are_400(client, pool, org, body, field) -> None:
    auth = await _token(pool, org.id, "webhooks:manage")
    response = await client.post("/api/v1/webhooks", json=body, headers=auth)
    assert response.status == 400, await response.text()
    problem = await response.json()
    assert any(error["field"] == field for error in problem["errors"]), problem
    assert (
        await pool.fetchval("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", org.id)
        == 0
    )


async def test_private_destinations_only_when_allowed(settings, pool, org) -> None:
    auth = await _token(pool, org.id, "webhooks:manage")
    client = await gateway_client(settings, webhook_allow_private=True)
    try:
        response = await client.post(
            "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=auth
        )
        assert response.status == 201
    finally:
        await client.close()


async def test_the_number_of_endpoints_per_tenant_is_limited(settings, pool, org) -> None:
    auth = await _token(pool, org.id, "webhooks:manage")
    client = await gateway_client(settings, webhook_max_per_tenant=1)
    try:
        assert (
            await client.post("/api/v1/webhooks", json={"url": URL}, headers=auth)
        ).status == 201
        response = await client.post("/api/v1/webhooks", json={"url": URL}, headers=auth)
        assert response.status == 409
    finally:
        await client.close()
