"""A single-page app on another origin registers, activates and signs in through the real
gateway from headless Chromium (fetch with credentials, CORS preflights first); a page on
an origin the tenant does not list is refused by the browser itself."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.e2e.test_accept_page_browser import browser  # noqa: F401  (fixture)
from tests.e2e.test_self_registration import activation_token_in

pytestmark = pytest.mark.e2e

# Runs in the page: POST a registration cross-origin, report what the page can see.
REGISTER = """
const [url, body, done] = arguments;
fetch(url, {
  method: "POST",
  credentials: "include",
  headers: {"Content-Type": "application/json", "Prefer": "respond-async",
            "Idempotency-Key": crypto.randomUUID()},
  body: JSON.stringify(body),
}).then(
  async r => done({status: r.status, location: r.headers.get("Location"),
                   body: await r.json()}),
  e => done({error: String(e)}),
);
"""


# Runs in the page: activate (PUT, trailing slash as Baasic's SDK), sign in (form POST),
# then read the current user with the token (an Authorization header: a preflight).
SIGN_IN = """
const [base, token, username, password, done] = arguments;
(async () => {
  const activated = await fetch(`${base}/register/activate/${token}/`,
                                {method: "PUT", credentials: "include"});
  const login = await fetch(`${base}/login`, {
    method: "POST", credentials: "include",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({grant_type: "password", username, password}),
  });
  const grant = await login.json();
  const me = await fetch(`${base}/login`, {
    credentials: "include", headers: {"Authorization": `Bearer ${grant.access_token}`},
  });
  return {activated: activated.status, login: login.status, grant,
          me: me.status, user: await me.json()};
})().then(done, e => done({error: String(e)}));
"""


async def serve_page() -> tuple[web.AppRunner, str]:
    """An empty page on an origin of its own (another port: another origin)."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>spa</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def registration() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        "activationUrl": "https://app.example.com/a/{activationToken}",
        "challengeIdentifier": "-",
        "challengeResponse": "-",
        "email": f"spa-{tag}@example.com",
        "userName": f"spa{tag}",
        "password": "long enough password",
        "confirmPassword": "long enough password",
    }


async def test_a_listed_origin_registers_and_signs_in_from_the_browser_and_another_is_refused(
    service,
    mailbox,
    browser,  # noqa: F811
):
    listed_runner, listed = await serve_page()
    other_runner, other = await serve_page()
    try:
        tenant = service.cli(
            "tenant", "create", "Spa",
            "--activation-url-prefix", "https://app.example.com/",
            "--allowed-origin", listed,
        )  # fmt: skip
        url = f"{service.base_url}/{tenant['apiKey']}/register/"  # as Baasic's SDK sends it

        def run_in(origin: str, script: str, *args) -> dict:
            browser.set_script_timeout(30)
            browser.get(origin + "/")
            return browser.execute_async_script(script, *args)

        def register_from(origin: str, body: dict | None = None) -> dict:
            return run_in(origin, REGISTER, url, body or registration())

        body = registration()
        from_listed = await asyncio.to_thread(register_from, listed, body)
        assert from_listed.get("status") == 202, from_listed
        assert from_listed["location"].startswith(f"/{tenant['apiKey']}/register/requests/")
        assert from_listed["body"]["requestId"]

        mail = await mailbox.wait_for(lambda m: m["To"] == body["email"])
        token = activation_token_in(mail, "https://app.example.com/a/")
        base = f"{service.base_url}/{tenant['apiKey']}"
        signed_in = await asyncio.to_thread(
            run_in, listed, SIGN_IN, base, token, body["userName"], body["password"]
        )
        assert signed_in.get("activated") == 200, signed_in
        assert signed_in["login"] == 201 and signed_in["grant"]["token_type"] == "bearer"
        assert signed_in["me"] == 200 and signed_in["user"]["userName"] == body["userName"]

        from_other = await asyncio.to_thread(register_from, other)
        assert "error" in from_other, from_other  # the browser refused: no CORS grant
    finally:
        await listed_runner.cleanup()
        await other_runner.cleanup()
