"""Who is calling: API keys in the path, rate limits per client."""

from __future__ import annotations

from aiohttp import web

from service import tenants
from service.errors import RateLimited, Unauthorized
from service.gateway.keys import LIMITER, POOL
from service.tenants import Tenant


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
