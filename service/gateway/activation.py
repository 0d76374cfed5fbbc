"""PUT /{apiKey}/register/activate/{activationToken}"""

from __future__ import annotations

from aiohttp import web

from schemas.http import ActivatedUser
from service import activations, sessions, users
from service.errors import NotFound
from service.gateway.auth import enforce_rate_limit, enforce_tenant_rate_limit, tenant_from_path
from service.gateway.body import model_response
from service.gateway.keys import LOGIN_POLICY, POOL, PUBLISHER, SETTINGS, WAITER
from service.gateway.login import NO_STORE, options_of


async def activate(request: web.Request) -> web.Response:
    """Consume an activation token: 200 with the approved user, signed in (a token beside
    the user's fields, as Baasic's SDKs expect; sliding under `?options=sliding`), 404
    unknown, 409 used (202 if the worker has not decided in time). BrokerUnavailable: the
    problem middleware answers 503."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    pool = request.app[POOL]
    user_id = await activations.activate(
        pool,
        request.app[PUBLISHER],
        request.app[WAITER],
        tenant_id=tenant.id,
        token=request.match_info["activationToken"],
        timeout=request.app[SETTINGS].register_wait_s,
    )
    if user_id is None:
        return web.json_response({"status": "pending"}, status=202)
    user = await users.fetch_user(
        pool, user_id=user_id, tenant_id=tenant.id, api_key=request.match_info["apiKey"]
    )
    if user is None:
        raise NotFound("the user no longer exists")
    await sessions.record_sign_in(pool, user_id)  # activation signs the user in
    grant = await sessions.open_session(
        pool,
        tenant_id=tenant.id,
        user_id=user_id,
        ttl=request.app[LOGIN_POLICY].token_ttl,
        sliding="sliding" in options_of(request),
    )
    signed_in = ActivatedUser(**user.model_dump(by_alias=True), **grant.body())
    response = model_response(signed_in)
    response.headers.update(NO_STORE)
    return response
