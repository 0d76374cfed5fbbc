"""Self-hosted proof-of-work captcha (ALTCHA v1), each solution accepted once."""

from __future__ import annotations

import datetime as dt
import json
from binascii import Error as Base64Error

import altcha
import asyncpg

from service.errors import CaptchaFailed
from service.tenants import Tenant

VALIDITY = dt.timedelta(minutes=10)
ALREADY_USED = "this captcha solution was already used"


def new_challenge(tenant: Tenant, *, max_number: int) -> dict[str, object]:
    """A signed challenge in the shape the ALTCHA widget expects."""
    challenge = altcha.create_challenge_v1(
        hmac_key=tenant.secret,
        max_number=max_number,
        expires=dt.datetime.now(dt.UTC) + VALIDITY,
    )
    return {
        "algorithm": challenge.algorithm,
        "challenge": challenge.challenge,
        "maxnumber": challenge.max_number,
        "salt": challenge.salt,
        "signature": challenge.signature,
    }


def verify_solution(tenant: Tenant, *, identifier: str, response: str) -> None:
    """Check an ALTCHA payload for `identifier` (raises CaptchaFailed). Whether it was
    used before is decided where it is recorded as used (`consume_solution`, or with its
    request by service.intake)."""
    try:
        payload = altcha.PayloadV1.from_base64(response)
        ok, error = altcha.verify_solution_v1(payload, tenant.secret, check_expires=True)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, Base64Error, json.JSONDecodeError):
        raise CaptchaFailed("challengeResponse is not an ALTCHA payload") from None
    if not ok:
        raise CaptchaFailed(error or "the captcha solution is wrong")
    if payload.challenge != identifier:
        raise CaptchaFailed("challengeIdentifier does not match the solved challenge")


async def consume_solution(
    conn: asyncpg.Connection, tenant: Tenant, *, identifier: str, response: str
) -> None:
    """Verify an ALTCHA payload for `identifier` and mark it used (raises CaptchaFailed).

    Run it in the transaction that records what the captcha guards, so a refused request
    frees the solution again.
    """
    verify_solution(tenant, identifier=identifier, response=response)
    used = await conn.fetchval(
        """
        INSERT INTO captcha_solutions (challenge, tenant_id, expires_at)
        VALUES ($1, $2, now() + $3::interval)
        ON CONFLICT (challenge) DO NOTHING
        RETURNING false
        """,
        identifier,
        tenant.id,
        VALIDITY,
    )
    if used is None:
        raise CaptchaFailed(ALREADY_USED)
    await conn.execute("DELETE FROM captcha_solutions WHERE expires_at < now()")


async def release_solution(conn: asyncpg.Connection | asyncpg.Pool, identifier: str) -> None:
    """Forget a solution whose request the broker refused, so the client may retry."""
    await conn.execute("DELETE FROM captcha_solutions WHERE challenge = $1", identifier)
