"""Browsers and parsers: every HTML page carries the security headers; no JSON body,
however deep or however large its numbers, gets a 500."""

from __future__ import annotations

import pytest

from tests.gateway.test_limits import body, gateway_client


def nested(levels: int) -> object:
    """A value with `levels` containers around a number (the body object is one more)."""
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


ONE_LEVEL_TOO_DEEP = {"a": nested(32)}  # with the body object: 33 levels


async def test_html_pages_send_csp_nosniff_no_referrer_no_store(settings):
    client = await gateway_client(settings)
    try:
        page = await client.get("/invitations/not-a-real-token")
        assert page.content_type == "text/html"
        csp = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "form-action 'self'" in csp and "style-src 'sha256-" in csp
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert page.headers["Cache-Control"] == "no-store"
    finally:
        await client.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"email": ' + b"9" * 5000 + b"}",
        b'{"email": 1e999999}',
    ],
    ids=["5000-deep-array", "5000-deep-object", "5000-digit-int", "float-overflow"],
)
async def test_hostile_json_is_400_never_500(settings, api_key, raw):
    client = await gateway_client(settings)
    try:
        response = await client.post(
            f"/{api_key}/register", data=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400, await response.text()
        assert response.content_type == "application/problem+json"
    finally:
        await client.close()


async def test_nesting_beyond_the_limit_is_refused_by_name(settings, api_key):
    client = await gateway_client(settings)
    try:
        response = await client.post(f"/{api_key}/register", json={**body(), **ONE_LEVEL_TOO_DEEP})
        assert response.status == 400
        assert "nests deeper" in (await response.json())["detail"]
    finally:
        await client.close()
