"""A single-page app on another origin registers through the real gateway from headless
Chromium (fetch with credentials, a CORS preflight first); a page on an origin the
tenant does not list is refused by the browser itself."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.e2e.test_accept_page_browser import browser  # noqa: F401  (fixture)

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


async def test_a_listed_origin_registers_from_the_browser_and_another_is_refused(
    service,
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

        def register_from(origin: str) -> dict:
            browser.set_script_timeout(30)
            browser.get(origin + "/")
            return browser.execute_async_script(REGISTER, url, registration())

        from_listed = await asyncio.to_thread(register_from, listed)
        assert from_listed.get("status") == 202, from_listed
        assert from_listed["location"].startswith(f"/{tenant['apiKey']}/register/requests/")
        assert from_listed["body"]["requestId"]

        from_other = await asyncio.to_thread(register_from, other)
        assert "error" in from_other, from_other  # the browser refused: no CORS grant
    finally:
        await listed_runner.cleanup()
        await other_runner.cleanup()
