"""PUT /{apiKey}/register/activate/{activationToken}"""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from schemas.events import ActivationRequested, envelope
from service import tokens, users
from service.errors import NotFound, TokenAlreadyUsed
from service.gateway.auth import enforce_rate_limit, enforce_tenant_rate_limit, tenant_from_path
from service.gateway.body import model_response
from service.gateway.keys import POOL, PUBLISHER, SETTINGS, WAITER

ACTIVATION_ROW_SQL = """
SELECT t.id, t.user_id, t.expires_at, t.used_at, t.used_by, t.revoked_at
  FROM activation_tokens t JOIN users u ON u.id = t.user_id
 WHERE t.token_hash = $1 AND u.tenant_id = $2
"""


async def activate(request: web.Request) -> web.Response:
    """Consume an activation token: 200 with the approved user, 404 unknown, 409 used."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    pool = request.app[POOL]
    token_hash = tokens.hash_secret(request.match_info["activationToken"])
    row = await pool.fetchrow(ACTIVATION_ROW_SQL, token_hash, tenant.id)
    if row is None or row["revoked_at"] is not None:
        raise NotFound("unknown activation token")
    if row["used_at"] is not None:
        raise TokenAlreadyUsed("this activation token was already used")
    if row["expires_at"] <= dt.datetime.now(dt.UTC):
        raise NotFound("the activation token has expired")

    command = envelope(ActivationRequested(token_id=row["id"], tenant_id=tenant.id))
    # BrokerUnavailable propagates: the problem middleware answers 503.
    await request.app[PUBLISHER].publish("activation.requested", command)

    async def check() -> bool | None:
        used_by = await pool.fetchval(
            "SELECT used_by FROM activation_tokens WHERE id = $1", row["id"]
        )
        return None if used_by is None else used_by == command.id

    won = await request.app[WAITER].wait_for(
        str(row["id"]), check, timeout=request.app[SETTINGS].register_wait_s
    )
    if won is None:
        return web.json_response({"status": "pending"}, status=202)
    if not won:  # a concurrent activation with the same token got there first
        raise TokenAlreadyUsed("this activation token was already used")
    user = await users.fetch_user(
        pool, user_id=row["user_id"], tenant_id=tenant.id, api_key=request.match_info["apiKey"]
    )
    if user is None:
        raise NotFound("the user no longer exists")
    return model_response(user)
