"""Liveness and readiness probes, and the captcha challenge endpoint."""

from __future__ import annotations

from aiohttp import web

from service import captcha, metrics
from service.gateway.auth import enforce_rate_limit, enforce_tenant_rate_limit, tenant_from_path
from service.gateway.keys import POOL, PUBLISHER, SETTINGS, SUPERVISOR


async def healthz(_request: web.Request) -> web.Response:
    """The process is alive."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Postgres answers, the broker connection is open, and every essential background
    task (the LISTEN connection) is alive."""
    checks: dict[str, str] = {}
    try:
        await request.app[POOL].fetchval("SELECT 1", timeout=2)
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure means "not ready", never a 500
        checks["postgres"] = type(exc).__name__
    checks["rabbitmq"] = "ok" if request.app[PUBLISHER].is_connected else "disconnected"
    checks.update(request.app[SUPERVISOR].health.report())
    return metrics.readiness_response(checks)


async def captcha_challenge(request: web.Request) -> web.Response:
    """GET /{apiKey}/captcha/challenge - a fresh ALTCHA v1 challenge for this tenant."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    challenge = captcha.new_challenge(tenant, max_number=request.app[SETTINGS].captcha_max_number)
    return web.json_response(challenge, headers={"Cache-Control": "no-store"})
