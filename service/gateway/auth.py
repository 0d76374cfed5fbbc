"""Who is calling: API keys in the path, rate limits per client."""

from __future__ import annotations

from aiohttp import web

from service import tenants
from service.errors import Forbidden, RateLimited, Unauthorized
from service.gateway.keys import LIMITER, POOL
from service.tenants import AccessToken, Tenant

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="registrar"'}


def enforce_rate_limit(request: web.Request) -> None:
    """429 with Retry-After when this client address has spent its budget."""
    wait = request.app[LIMITER].take(request.remote or "unknown")
    if wait:
        raise RateLimited(f"retry in {wait} s", headers={"Retry-After": str(wait)}, retryAfter=wait)


async def tenant_from_path(request: web.Request) -> Tenant:
    """The tenant owning the `{apiKey}` path segment, or 401."""
    tenant = await tenants.find_by_api_key(request.app[POOL], request.match_info["apiKey"])
    if tenant is None:
        raise Unauthorized("unknown or revoked API key")
    return tenant


async def bearer_token(request: web.Request, *, scope: str) -> AccessToken:
    """The caller's bearer token: 401 when missing, unknown or revoked; 403 without `scope`."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized("a bearer token is required", headers=BEARER_CHALLENGE)
    token = await tenants.find_access_token(request.app[POOL], credentials.strip())
    if token is None:
        raise Unauthorized("unknown or revoked token", headers=BEARER_CHALLENGE)
    if scope not in token.scopes:
        raise Forbidden(f"the token lacks the {scope} scope")
    return token
