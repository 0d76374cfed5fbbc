"""Who is calling: API keys in the path, rate limits per client address and per tenant."""

from __future__ import annotations

import uuid

from aiohttp import web

from service.errors import Forbidden, RateLimited, Unauthorized
from service.gateway.keys import LIMITER, SETTINGS, TENANT_LIMITER, TENANTS
from service.ratelimit import client_address
from service.tenants import AccessToken, Tenant

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="registrar"'}


def client_of(request: web.Request) -> str:
    """The caller's address: X-Forwarded-For is believed only from REGISTRAR_TRUSTED_PROXIES."""
    return client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        request.app[SETTINGS].trusted_proxies,
    )


def refuse_when_limited(wait: int, detail: str) -> None:
    """429 with Retry-After when a limiter asked to wait `wait` seconds."""
    if wait:
        raise RateLimited(detail, headers={"Retry-After": str(wait)}, retryAfter=wait)


def enforce_rate_limit(request: web.Request) -> None:
    """429 with Retry-After when this client address has spent its budget (checked first,
    before any database work)."""
    wait = request.app[LIMITER].take(client_of(request))
    refuse_when_limited(wait, f"too many requests from this address; retry in {wait} s")


def enforce_tenant_rate_limit(request: web.Request, tenant_id: uuid.UUID) -> None:
    """429 with Retry-After when the tenant, all its clients together, has spent its budget."""
    wait = request.app[TENANT_LIMITER].take(str(tenant_id))
    refuse_when_limited(wait, f"too many requests for this tenant; retry in {wait} s")


async def tenant_from_path(request: web.Request) -> Tenant:
    """The tenant owning the `{apiKey}` path segment, or 401."""
    tenant = await request.app[TENANTS].tenant(request.match_info["apiKey"])
    if tenant is None:
        raise Unauthorized("unknown or revoked API key")
    return tenant


async def bearer_token(request: web.Request, *, scope: str | None) -> AccessToken:
    """The caller's bearer token: 401 when missing, unknown or revoked; 403 without `scope`
    (None: any scope will do, the caller checks)."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized("a bearer token is required", headers=BEARER_CHALLENGE)
    token = await request.app[TENANTS].access_token(credentials.strip())
    if token is None:
        raise Unauthorized("unknown or revoked token", headers=BEARER_CHALLENGE)
    if scope is not None:
        _require_scope(token, scope)
    return token


def _require_scope(token: AccessToken, scope: str) -> None:
    if scope not in token.scopes:
        raise Forbidden(f"the token lacks the {scope} scope")


async def tenant_token(request: web.Request, *, scope: str) -> Tenant:
    """The tenant of the `{apiKey}` path segment, for a caller holding a bearer token of
    that same tenant with `scope` (the back office, SPEC §11): 401 for an unknown API
    key, a missing, unknown or revoked token, or a token of another tenant; 403 without
    the scope. Rate limits as for every Baasic-shaped route."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    token = await bearer_token(request, scope=None)
    if token.tenant.id != tenant.id:
        raise Unauthorized("the token belongs to another tenant", headers=BEARER_CHALLENGE)
    _require_scope(token, scope)
    return tenant
