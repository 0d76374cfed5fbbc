"""Browsers and parsers: every HTML page carries the security headers; no JSON body,
however deep or however large its numbers, gets a 500."""

from __future__ import annotations

import json

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


# Found by `make fuzz`: a NUL reached PostgreSQL (500). Text that cannot be stored or
# hashed (NUL, an unpaired surrogate from a JSON escape) is a 400 wherever it comes in.
UNSTORABLE = ["ann\x00", "\\ud800ann"]
X = "@TEXT@"  # where the unstorable text goes in each body


@pytest.mark.parametrize("text", UNSTORABLE, ids=["nul", "lone-surrogate"])
async def test_unstorable_text_is_400_on_the_life_cycle_routes(settings, api_key, text):
    escaped = text.replace("\x00", "\\u0000")
    client = await gateway_client(settings)
    bearer = {"Authorization": "Bearer rgu_x", "Content-Type": "application/json"}
    try:
        recover_url = "https://app.example.com/r/{passwordRecoveryToken}"
        attempts = [
            ("POST", "login", {"grant_type": "password", "username": X, "password": "x"}),
            ("POST", "login", {"grant_type": "password", "username": "ann", "password": X}),
            ("PUT", "login", {"token": X}),
            ("POST", "recover-password", {"userName": X, "recoverUrl": recover_url}),
            ("PUT", "recover-password", {"passwordRecoveryToken": X, "newPassword": "long enough"}),
            ("PUT", "users/ann/change-password", {"newPassword": "long enough", "oldPassword": X}),
            ("DELETE", "users/me", {"password": X}),
        ]
        for method, path, fields in attempts:
            raw = json.dumps(fields).replace(X, escaped)  # as the client's JSON escapes it
            answer = await client.request(method, f"/{api_key}/{path}", data=raw, headers=bearer)
            assert answer.status == 400, (method, path, answer.status, await answer.text())
            assert answer.content_type == "application/problem+json"
        nul_in_path = await client.put(
            f"/{api_key}/users/ann%00/change-password",
            json={"newPassword": "long enough"},
            headers={"Authorization": "Bearer rgu_x"},
        )
        assert nul_in_path.status in (401, 404)
    finally:
        await client.close()


@pytest.mark.parametrize("content_type", [";0*", "a/b; =", ";"])
async def test_unparseable_content_types_are_415_never_500(settings, api_key, content_type):
    """Found by the fuzzer: the stdlib parser behind aiohttp's `content_type` raises
    IndexError on some malformed headers."""
    client = await gateway_client(settings)
    try:
        for path in ("register", "login"):
            answer = await client.post(
                f"/{api_key}/{path}", data=b"", headers={"Content-Type": content_type}
            )
            assert answer.status == 415, (path, answer.status)
        form = await client.post("/invitations/x", data=b"", headers={"Content-Type": content_type})
        assert 400 <= form.status < 500
    finally:
        await client.close()
