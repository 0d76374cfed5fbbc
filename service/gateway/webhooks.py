"""Webhook endpoints over HTTP (SPEC §11): `POST|GET /api/v1/webhooks`,
`DELETE /api/v1/webhooks/{id}` and `POST /api/v1/webhooks/{id}/replay`, with a tenant
bearer token holding `webhooks:manage`; the tenant is the token's."""

from __future__ import annotations

import uuid

from aiohttp import web

from schemas.webhooks import WebhookCreate
from service import webhooks
from service.errors import Conflict, NotFound, ValidationFailed
from service.gateway.auth import bearer_token, enforce_rate_limit, enforce_tenant_rate_limit
from service.gateway.body import read_json_object, validate
from service.gateway.keys import POOL, SETTINGS
from service.tenants import AccessToken

SCOPE = "webhooks:manage"
PATH = "/api/v1/webhooks"


async def _caller(request: web.Request) -> AccessToken:
    """The caller's token (401 / 403 / 429 as for every tenant-token route)."""
    enforce_rate_limit(request)
    token = await bearer_token(request, scope=SCOPE)
    enforce_tenant_rate_limit(request, token.tenant.id)
    return token


def _endpoint_id(request: web.Request) -> uuid.UUID:
    """The `{id}` of the path; a malformed one names no endpoint (404)."""
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("no such webhook endpoint") from None


async def create_webhook(request: web.Request) -> web.Response:
    """POST /api/v1/webhooks {url, events?} -> 201 with the endpoint and its secret."""
    token = await _caller(request)
    form = validate(WebhookCreate, await read_json_object(request))
    settings = request.app[SETTINGS]
    try:
        endpoint, secret = await webhooks.create_endpoint(
            request.app[POOL],
            tenant_id=token.tenant.id,
            url=form.url,
            events=form.events,
            public_key=settings.seal_public_key or "",
            allow_private=settings.webhook_allow_private,
            max_per_tenant=settings.webhook_max_per_tenant,
        )
    except webhooks.TooManyEndpoints as exc:
        raise Conflict(str(exc)) from None
    except webhooks.WebhookError as exc:
        field = "url" if str(exc).startswith("url:") else "events"
        raise ValidationFailed(str(exc), errors=[{"field": field, "message": str(exc)}]) from None
    return web.json_response(
        {**endpoint.to_json(), "secret": secret},
        status=201,
        headers={"Location": f"{PATH}/{endpoint.id}", "Cache-Control": "no-store"},
    )


async def list_webhooks(request: web.Request) -> web.Response:
    """GET /api/v1/webhooks -> 200 {items: [endpoint...]} (the token's tenant's)."""
    token = await _caller(request)
    endpoints = await webhooks.list_endpoints(request.app[POOL], token.tenant.id)
    return web.json_response({"items": [endpoint.to_json() for endpoint in endpoints]})


async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE /api/v1/webhooks/{id} -> 204; 404 unless it is the tenant's."""
    token = await _caller(request)
    endpoint_id = _endpoint_id(request)
    if not await webhooks.remove_endpoint(
        request.app[POOL], endpoint_id, tenant_id=token.tenant.id
    ):
        raise NotFound("no such webhook endpoint")
    return web.Response(status=204)


async def replay_webhook(request: web.Request) -> web.Response:
    """POST /api/v1/webhooks/{id}/replay -> 200 {id, replayed, enabled}; 404."""
    token = await _caller(request)
    endpoint_id = _endpoint_id(request)
    replayed = await webhooks.replay(request.app[POOL], endpoint_id, tenant_id=token.tenant.id)
    if replayed is None:
        raise NotFound("no such webhook endpoint")
    return web.json_response({"id": str(endpoint_id), "replayed": replayed, "enabled": True})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(PATH, create_webhook)
    router.add_get(PATH, list_webhooks)
    router.add_delete(PATH + "/{id}", delete_webhook)
    router.add_post(PATH + "/{id}/replay", replay_webhook)
