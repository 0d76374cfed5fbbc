"""CORS on the Baasic-shaped routes (SPEC §3): preflights answered and the grant given
only to the origins the tenant lists, errors included; other origins get no CORS header.
The browser side of it is tests/e2e/test_cors_browser.py."""

from __future__ import annotations

import asyncio

import pytest

from service import tenants
from tests.gateway.test_limits import body, gateway_client

APP = "https://spa.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture
async def tenant_and_key(pool):
    return await tenants.create_tenant(
        pool,
        name="cors",
        activation_url_prefixes=["https://app.example.com/"],
        allowed_origins=[APP + "/"],
    )


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type, idempotency-key, prefer",
    }


async def test_a_listed_origin_gets_the_preflight_grant(settings, tenant_and_key):
    _, api_key = tenant_and_key
    client = await gateway_client(settings)
    try:
        for path in (f"/{api_key}/register", f"/{api_key}/register/"):
            answer = await client.options(path, headers=preflight_headers(APP))
            assert answer.status == 204
            assert answer.headers["Access-Control-Allow-Origin"] == APP
            assert answer.headers["Access-Control-Allow-Credentials"] == "true"
            assert answer.headers["Access-Control-Allow-Methods"] == "POST"
            allowed = answer.headers["Access-Control-Allow-Headers"].lower()
            for header in ("content-type", "authorization", "accept-language", "prefer"):
                assert header in allowed
            assert "Origin" in answer.headers["Vary"]
        put = await client.options(
            f"/{api_key}/register/activate/abc/", headers=preflight_headers(APP, "PUT")
        )
        assert put.status == 204 and put.headers["Access-Control-Allow-Methods"] == "PUT"
        # One path, several methods (added apart): the grant lists every one of them.
        for method in ("POST", "GET", "PUT", "DELETE"):
            login = await client.options(
                f"/{api_key}/login/", headers=preflight_headers(APP, method)
            )
            assert login.status == 204, method
            assert login.headers["Access-Control-Allow-Methods"] == "DELETE, GET, POST, PUT"
    finally:
        await client.close()


async def test_an_unlisted_origin_or_method_gets_no_grant(settings, tenant_and_key):
    _, api_key = tenant_and_key
    client = await gateway_client(settings)
    try:
        refused = await client.options(f"/{api_key}/register", headers=preflight_headers(OTHER))
        assert refused.status == 403
        assert "Access-Control-Allow-Origin" not in refused.headers
        wrong = await client.options(
            f"/{api_key}/register", headers=preflight_headers(APP, "DELETE")
        )
        assert wrong.status == 403
        unknown = await client.options("/not-a-key/register", headers=preflight_headers(APP))
        assert unknown.status == 401
        assert "Access-Control-Allow-Origin" not in unknown.headers
    finally:
        await client.close()


async def test_answers_and_errors_carry_the_grant_for_a_listed_origin_only(
    settings, tenant_and_key
):
    _, api_key = tenant_and_key
    client = await gateway_client(settings)
    try:
        headers = {"Origin": APP, "Prefer": "respond-async"}
        created = await client.post(f"/{api_key}/register", json=body(), headers=headers)
        assert created.status == 202
        assert created.headers["Access-Control-Allow-Origin"] == APP
        assert created.headers["Access-Control-Allow-Credentials"] == "true"
        exposed = created.headers["Access-Control-Expose-Headers"]
        assert "Location" in exposed and "Retry-After" in exposed

        invalid = await client.post(f"/{api_key}/register", json={}, headers=headers)
        assert invalid.status == 400  # the page can read why
        assert invalid.headers["Access-Control-Allow-Origin"] == APP

        other = await client.post(
            f"/{api_key}/register", json=body(), headers={**headers, "Origin": OTHER}
        )
        assert other.status == 202  # not a browser: nothing stops the request itself
        assert "Access-Control-Allow-Origin" not in other.headers
        assert other.headers["Vary"] == "Origin"
    finally:
        await client.close()


async def test_changing_the_origins_takes_effect_in_a_running_gateway(
    settings, pool, tenant_and_key
):
    tenant, api_key = tenant_and_key
    client = await gateway_client(settings)
    try:
        path = f"/{api_key}/register"
        assert (await client.options(path, headers=preflight_headers(APP))).status == 204
        await tenants.update_tenant(pool, tenant.id, allowed_origins=[OTHER])
        for _ in range(20):  # the change reaches the gateway by NOTIFY
            if (await client.options(path, headers=preflight_headers(APP))).status == 403:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the removed origin is still granted")
        assert (await client.options(path, headers=preflight_headers(OTHER))).status == 204
    finally:
        await client.close()


async def test_update_tenant_checks_what_it_is_given(pool, tenant_and_key):
    tenant, _ = tenant_and_key
    with pytest.raises(ValueError, match="allowed origin"):
        await tenants.update_tenant(pool, tenant.id, allowed_origins=["not an origin"])
    with pytest.raises(ValueError, match="cannot change"):
        await tenants.update_tenant(pool, tenant.id, api_key_hash=b"x")
    updated = await tenants.update_tenant(
        pool, tenant.id, captcha="pow", default_locale="de", registration_enabled=False
    )
    assert (updated.captcha, updated.default_locale, updated.registration_enabled) == (
        "pow",
        "de",
        False,
    )
    assert updated.allowed_origins == (APP,)  # untouched
