"""ALTCHA proof-of-work captcha against real PostgreSQL: each solution is accepted once."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json

import altcha
import asyncpg
import pytest

from service import captcha
from service.errors import CaptchaFailed
from service.tenants import Tenant
from tests.conftest import solve_pow
from tests.integration.conftest import MakeTenant

MAX_NUMBER = 2000


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant(captcha="pow")


def tampered(response: str, **changes: object) -> str:
    payload = json.loads(base64.b64decode(response))
    payload.update(changes)
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def consume(pool: asyncpg.Pool, tenant: Tenant, identifier: str, response: str) -> None:
    """consume_solution in its own committed transaction, as the gateway runs it."""
    async with pool.acquire() as conn, conn.transaction():
        await captcha.consume_solution(conn, tenant, identifier=identifier, response=response)


async def test_new_challenge_has_the_altcha_widget_shape(tenant: Tenant) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)

    assert set(challenge) == {"algorithm", "challenge", "maxnumber", "salt", "signature"}
    assert challenge["algorithm"] == "SHA-256"
    assert challenge["maxnumber"] == MAX_NUMBER
    assert "expires=" in challenge["salt"]


async def test_a_solved_challenge_is_accepted_once_and_a_replay_fails(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)
    response = solve_pow(challenge)

    await consume(pool, tenant, challenge["challenge"], response)

    assert (
        await pool.fetchval(
            "SELECT tenant_id FROM captcha_solutions WHERE challenge = $1", challenge["challenge"]
        )
        == tenant.id
    )
    with pytest.raises(CaptchaFailed, match="already used"):
        await consume(pool, tenant, challenge["challenge"], response)


async def test_two_concurrent_uses_of_one_solution_accept_exactly_one(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)
    response = solve_pow(challenge)

    results = await asyncio.gather(
        consume(pool, tenant, challenge["challenge"], response),
        consume(pool, tenant, challenge["challenge"], response),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["CaptchaFailed", "NoneType"]


async def test_a_solution_consumed_in_a_rolled_back_transaction_can_be_used_again(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)
    response = solve_pow(challenge)

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with pool.acquire() as conn, conn.transaction():
            await captcha.consume_solution(
                conn, tenant, identifier=challenge["challenge"], response=response
            )
            raise Refused  # e.g. the request failed validation after the captcha check

    await consume(pool, tenant, challenge["challenge"], response)


async def test_release_solution_frees_a_used_solution_for_another_attempt(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)
    response = solve_pow(challenge)
    await consume(pool, tenant, challenge["challenge"], response)

    await captcha.release_solution(pool, challenge["challenge"])

    await consume(pool, tenant, challenge["challenge"], response)
    with pytest.raises(CaptchaFailed):
        await consume(pool, tenant, challenge["challenge"], response)


async def test_a_solution_sent_with_another_challenge_identifier_fails(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)
    other = captcha.new_challenge(tenant, max_number=MAX_NUMBER)

    with pytest.raises(CaptchaFailed, match="does not match"):
        await consume(pool, tenant, other["challenge"], solve_pow(challenge))

    assert (
        await pool.fetchval(
            "SELECT count(*) FROM captcha_solutions WHERE challenge = ANY($1::text[])",
            [challenge["challenge"], other["challenge"]],
        )
        == 0
    )


@pytest.mark.parametrize(
    "response",
    [
        "",
        "not base64 at all!",
        base64.b64encode(b"\xff\xfe\x00").decode(),  # not UTF-8
        base64.b64encode(b"{not json").decode(),
        base64.b64encode(b"[1, 2, 3]").decode(),
        base64.b64encode(b"null").decode(),
        base64.b64encode(b'{"algorithm": "SHA-256"}').decode(),  # fields missing
    ],
    ids=["empty", "not-base64", "not-utf8", "not-json", "json-list", "json-null", "partial"],
)
async def test_a_garbage_payload_fails_with_captcha_failed(
    pool: asyncpg.Pool, tenant: Tenant, response: str
) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)

    with pytest.raises(CaptchaFailed):
        await consume(pool, tenant, challenge["challenge"], response)


async def test_a_payload_with_a_tampered_number_fails(pool: asyncpg.Pool, tenant: Tenant) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)
    response = solve_pow(challenge)
    number = json.loads(base64.b64decode(response))["number"]

    with pytest.raises(CaptchaFailed):
        await consume(pool, tenant, challenge["challenge"], tampered(response, number=number + 1))
    # The genuine solution is still unused.
    await consume(pool, tenant, challenge["challenge"], response)


async def test_a_payload_with_a_forged_signature_fails(pool: asyncpg.Pool, tenant: Tenant) -> None:
    challenge = captcha.new_challenge(tenant, max_number=MAX_NUMBER)

    with pytest.raises(CaptchaFailed):
        await consume(
            pool, tenant, challenge["challenge"], tampered(solve_pow(challenge), signature="0" * 64)
        )


async def test_a_challenge_signed_for_another_tenant_fails(
    pool: asyncpg.Pool, tenant: Tenant, make_tenant: MakeTenant
) -> None:
    other = await make_tenant(captcha="pow")
    challenge = captcha.new_challenge(other, max_number=MAX_NUMBER)

    with pytest.raises(CaptchaFailed):
        await consume(pool, tenant, challenge["challenge"], solve_pow(challenge))


async def test_an_expired_challenge_fails(pool: asyncpg.Pool, tenant: Tenant) -> None:
    expired = altcha.create_challenge_v1(
        hmac_key=tenant.secret,
        max_number=MAX_NUMBER,
        expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5),
    )
    challenge = {
        "algorithm": expired.algorithm,
        "challenge": expired.challenge,
        "maxnumber": expired.max_number,
        "salt": expired.salt,
        "signature": expired.signature,
    }

    with pytest.raises(CaptchaFailed, match="expired"):
        await consume(pool, tenant, challenge["challenge"], solve_pow(challenge))
