"""The Blynk-shaped users routes take their input from the query string: any bytes there
get a clear 4xx or a page, never a 500 (in-process gateway, real PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import tenants
from tests.gateway.test_limits import gateway_client

ROUTES = (
    ("GET", "/api/v1/organization/users"),
    ("GET", "/api/v1/organization/search/users"),
    ("GET", "/api/v1/organization/user"),
    ("PUT", "/api/v1/organization/users/role"),
)
NAMES = ("page", "size", "query", "sortBy", "sortOrder", "userId", "roleId", "other")
# Values as they stand on the wire: any byte, percent-encoded (undecodable UTF-8, NUL,
# encoded surrogates), and some nearly valid ones.
wire_values = st.binary(max_size=40).map(lambda b: "".join(f"%{x:02X}" for x in b)) | (
    st.sampled_from(("0", "-1", "101", "1e3", "ASC", "desc", "User Id", "%ED%A0%80", "%00"))
)
queries = st.lists(st.tuples(st.sampled_from(NAMES), wire_values), max_size=6)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
async def client(settings):
    client = await gateway_client(settings, rate_limit_burst=100_000)
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def token(pool) -> str:
    tenant, _ = await tenants.create_tenant(pool, name="blynk-fuzz", activation_url_prefixes=[])
    _, token = await tenants.create_access_token(
        pool, tenant_id=tenant.id, scopes=["users:read", "users:write"]
    )
    return token


@FUZZ
@given(route=st.sampled_from(ROUTES), query=queries)
async def test_any_query_string_gets_a_page_or_a_clear_4xx(client, token, route, query):
    method, path = route
    raw = "&".join(f"{name}={value}" for name, value in query)
    response = await client.request(
        method, f"{path}?{raw}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status in (200, 400, 404), (response.status, await response.text())
    body = json.loads(await response.text())
    if response.status >= 400:
        assert response.content_type == "application/problem+json"
        assert body["error"]["message"]
