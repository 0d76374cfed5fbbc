"""CORS for the Baasic-shaped routes (SPEC §3): single-page apps on the origins a tenant
lists (`--allowed-origin`) may call `/{apiKey}/…` from the browser, with credentials.

Only a listed origin is ever echoed (never `*`, which browsers refuse with credentials
anyway); any other origin gets no CORS header at all, so the browser keeps the answer
from the page. The tenant comes from the API key in the path, as for the request itself;
preflights carry no credentials, so bearer-token routes (Blynk's, called server to
server) are not offered to browsers.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from service.errors import Forbidden
from service.gateway.auth import enforce_rate_limit, tenant_from_path
from service.gateway.keys import TENANTS

ALLOWED_HEADERS = "Content-Type, Authorization, Accept-Language, Idempotency-Key, Prefer"
EXPOSED_HEADERS = "Location, Retry-After, X-Request-Id"
MAX_AGE_S = "600"


def _allowed(origin: str, allowed_origins: tuple[str, ...]) -> bool:
    # Browsers send the origin normalized, as tenants store them (service.origins).
    return origin in allowed_origins


def _methods_of(request: web.Request) -> list[str]:
    """Every method the requested path answers. aiohttp may keep the methods of one path in
    several resources (when they were added apart), so all resources of the path count."""
    path = request.match_info.route.resource.canonical
    return sorted(
        {
            route.method
            for resource in request.app.router.resources()
            if resource.canonical == path
            for route in resource
        }
        - {"OPTIONS", "HEAD"}
    )


async def preflight(request: web.Request) -> web.Response:
    """OPTIONS on a Baasic-shaped route: 204 with the CORS grant for a listed origin."""
    enforce_rate_limit(request)
    origin = request.headers.get("Origin", "")
    tenant = await tenant_from_path(request)
    if not origin or not _allowed(origin, tenant.allowed_origins):
        raise Forbidden("this origin may not call the API from a browser")
    methods = _methods_of(request)
    wanted = request.headers.get("Access-Control-Request-Method", "")
    if wanted not in methods:
        raise Forbidden(f"{wanted or 'no method'} is not allowed here")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": MAX_AGE_S,
            "Vary": "Origin",
        },
    )


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Adds the CORS grant to the answers (errors included) of a Baasic-shaped route
    called from a listed origin. Outermost: it sees the problem+json answers too."""
    response = await handler(request)
    origin = request.headers.get("Origin")
    api_key = request.match_info.get("apiKey")
    if origin is None or api_key is None or request.method == "OPTIONS":
        return response
    response.headers["Vary"] = "Origin"
    try:
        tenant = await request.app[TENANTS].tenant(api_key)
    except Exception:  # the answer is what it is; without the tenant, no grant
        return response
    if tenant is not None and _allowed(origin, tenant.allowed_origins):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response
