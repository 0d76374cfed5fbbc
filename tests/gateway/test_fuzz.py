"""Bad input gets a clear 4xx, never a 500: property-based requests against the real
gateway app (in-process, on the real PostgreSQL and RabbitMQ)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import tenants
from tests.gateway.test_limits import gateway_client

FIELDS = (
    "activationUrl",
    "challengeIdentifier",
    "challengeResponse",
    "confirmPassword",
    "email",
    "password",
    "userName",
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
# Bodies near the real shape: the right keys with arbitrary values, some keys missing.
near_bodies = st.dictionaries(
    st.sampled_from((*FIELDS, "extra")), json_values | st.text(max_size=80), max_size=8
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
async def client(settings_for_fuzz):
    client = await gateway_client(settings_for_fuzz)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def settings_for_fuzz(settings):
    # No workers run here: answer at once instead of waiting for an outcome.
    return settings.model_copy(update={"register_wait_s": 0.0, "rate_limit_burst": 100_000})


@pytest.fixture(scope="module")
async def keys(pool) -> dict[str, str]:
    _, api_key = await tenants.create_tenant(
        pool, name="fuzz", activation_url_prefixes=["https://app.example/"], captcha="pow"
    )
    tenant = await tenants.find_by_api_key(pool, api_key)
    _, token = await tenants.create_access_token(pool, tenant_id=tenant.id, scopes=["users:invite"])
    return {"apiKey": api_key, "token": token}


def assert_clear_answer(status: int, content_type: str) -> None:
    assert status < 500, f"server error {status}"
    if status >= 400:
        assert content_type in ("application/problem+json", "text/html"), content_type


@FUZZ
@given(body=json_values | near_bodies, prefer=header_text, language=header_text, key=header_text)
async def test_register_never_answers_5xx(client, keys, body, prefer, language, key):
    response = await client.post(
        f"/{keys['apiKey']}/register",
        data=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            "Prefer": prefer,
            "Accept-Language": language,
            "Idempotency-Key": key or "k",
        },
    )
    assert_clear_answer(response.status, response.content_type)


@FUZZ
@given(raw=st.binary(max_size=200), content_type=header_text)
async def test_undecodable_bodies_and_odd_content_types_are_4xx(client, keys, raw, content_type):
    response = await client.post(
        f"/{keys['apiKey']}/register", data=raw, headers={"Content-Type": content_type}
    )
    assert 400 <= response.status < 500
    assert_clear_answer(response.status, response.content_type)


@FUZZ
@given(
    body=json_values
    | st.dictionaries(
        st.sampled_from(("email", "locale", "name", "roleId")), json_values, max_size=4
    ),
    path=st.sampled_from(("register", "invite")),
)
async def test_invite_never_answers_5xx(client, keys, body, path):
    response = await client.post(
        f"/api/v1/organization/users/{path}",
        data=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {keys['token']}"},
    )
    assert_clear_answer(response.status, response.content_type)


@FUZZ
@given(
    segment=st.text(min_size=1, max_size=60).filter(lambda s: "/" not in s and s not in (".", ".."))
)
async def test_path_parameters_of_any_shape_are_4xx(client, keys, segment):
    segment = quote(segment, safe="")  # as a client puts it on the wire
    for method, path in (
        ("GET", f"/{keys['apiKey']}/register/requests/{segment}"),
        ("PUT", f"/{keys['apiKey']}/register/activate/{segment}"),
        ("GET", f"/invitations/{segment}"),
        ("GET", f"/{segment}/captcha/challenge"),
    ):
        response = await client.request(method, path)
        assert_clear_answer(response.status, response.content_type)
        assert response.status in (401, 404, 410), (method, path, response.status)
