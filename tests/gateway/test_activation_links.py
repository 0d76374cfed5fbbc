"""Links stay ours: the gateway refuses activation URLs outside the tenant's prefixes,
compared as parsed URLs (SPEC §3), before anything is published."""

from __future__ import annotations

import uuid

import pytest

from service import tenants
from tests.gateway.test_limits import body, gateway_client

P = "{activationToken}"


@pytest.fixture
async def app_tenant(pool) -> str:
    _, key = await tenants.create_tenant(
        pool,
        name="links",
        activation_url_prefixes=["https://app.example.com", "https://shop.example.com/app"],
    )
    return key


@pytest.mark.parametrize(
    "url",
    [
        f"https://app.example.com.evil.test/a?t={P}",
        f"https://app.example.com@evil.test/a?t={P}",
        f"https://app.example.com/a\r\nX-Injected: 1?t={P}",
        f"https://app.example.com/{'a' * 8192}?t={P}",
        f"https://app.example.com/a/{P}?again={P}",
        f"http://app.example.com/a?t={P}",
        f"https://shop.example.com/appx/{P}",
    ],
)
async def test_activation_url_outside_the_prefixes_is_400(settings, app_tenant, url):
    client = await gateway_client(settings)
    try:
        response = await client.post(
            f"/{app_tenant}/register",
            json={**body(), "activationUrl": url},
            headers={"Prefer": "respond-async"},
        )
        assert response.status == 400
        problem = await response.json()
        assert "activationUrl" in problem["detail"]
    finally:
        await client.close()


@pytest.mark.parametrize(
    "url", [f"https://APP.example.com:443/a?t={P}", f"https://shop.example.com/app/x/{P}"]
)
async def test_activation_url_under_a_prefix_is_accepted(settings, app_tenant, url):
    client = await gateway_client(settings)
    try:
        response = await client.post(
            f"/{app_tenant}/register",
            json={**body(), "activationUrl": url},
            headers={"Prefer": "respond-async"},
        )
        assert response.status == 202
    finally:
        await client.close()


async def test_create_tenant_refuses_a_prefix_that_is_not_an_https_url(pool):
    for prefix in ("app.example.com", "http://app.example.com/", "https://a@b.example/"):
        with pytest.raises(ValueError, match="prefix"):
            await tenants.create_tenant(
                pool, name=f"bad-{uuid.uuid4().hex[:6]}", activation_url_prefixes=[prefix]
            )
