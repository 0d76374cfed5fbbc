"""The gateway's side of the account life cycle (SPEC §10): the captcha on recovery as the
tenant configures it, login limits per address, and the bounded password checks answering
503 instead of queueing without end."""

from __future__ import annotations

import asyncio

from service import tenants
from service.gateway.keys import CHECKER
from tests.conftest import solve_pow
from tests.gateway.test_limits import gateway_client

RECOVER_URL = "https://app.example.com/r/{passwordRecoveryToken}"


def wrong_login(name: str) -> dict[str, str]:
    return {"grant_type": "password", "username": name, "password": "wrong-password"}


async def test_recovery_needs_a_fresh_captcha_when_the_tenant_asks_for_one(settings, pool):
    _, api_key = await tenants.create_tenant(
        pool, name="pow", captcha="pow", activation_url_prefixes=["https://app.example.com/"]
    )
    client = await gateway_client(settings)
    try:
        url = f"/{api_key}/recover-password"
        missing = await client.post(url, json={"userName": "ann", "recoverUrl": RECOVER_URL})
        assert missing.status == 400 and (await missing.json())["type"].endswith("captcha")

        challenge = await (await client.get(f"/{api_key}/captcha/challenge")).json()
        solved = {
            "userName": "ann",
            "recoverUrl": RECOVER_URL,
            "challengeIdentifier": challenge["challenge"],
            "challengeResponse": await asyncio.to_thread(solve_pow, challenge),
        }
        assert (await client.post(url, json=solved)).status == 201
        replayed = await client.post(url, json=solved)
        assert replayed.status == 400 and (await replayed.json())["type"].endswith("captcha")
    finally:
        await client.close()


async def test_login_attempts_from_one_address_are_limited_across_names(settings, api_key):
    client = await gateway_client(
        settings, login_address_rate_limit_burst=3, login_address_rate_limit_per_minute=1
    )
    try:
        statuses = [
            (await client.post(f"/{api_key}/login", data=wrong_login(f"name{i}"))).status
            for i in range(4)
        ]
        assert statuses == [401, 401, 401, 429]
    finally:
        await client.close()


async def test_a_storm_beyond_the_check_queue_gets_503_busy_at_once(settings, api_key):
    client = await gateway_client(
        settings,
        password_check_threads=1,
        password_check_queue=1,
        login_rate_limit_burst=1000,
        login_address_rate_limit_burst=1000,
    )
    try:
        checker = client.server.app[CHECKER]
        answers = await asyncio.gather(
            *(client.post(f"/{api_key}/login", data=wrong_login(f"n{i}")) for i in range(12))
        )
        statuses = sorted(a.status for a in answers)
        assert set(statuses) == {401, 503}, statuses
        busy = next(a for a in answers if a.status == 503)
        assert busy.headers["Retry-After"] == "1"
        assert (await busy.json())["type"].endswith("busy")
        assert checker.in_progress == 0  # nothing left behind
    finally:
        await client.close()
