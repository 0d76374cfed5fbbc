"""Organization invitations (Blynk-compatible): POST /api/v1/organization/users/..."""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import BaseModel

from schemas.events import InviteRequested, envelope
from schemas.http import InviteRegisterRequest, InviteRequest
from service import tenants
from service.amqp import BrokerUnavailable
from service.errors import IdempotencyKeyReused, ServiceUnavailable, ValidationFailed
from service.gateway.auth import bearer_token, enforce_rate_limit
from service.gateway.body import read_json_object, validate
from service.gateway.idempotency import fingerprint, same_body
from service.gateway.keys import POOL, PUBLISHER
from service.tenants import Tenant

INVITE_SCOPE = "users:invite"


async def request_id_for(
    request: web.Request, tenant: Tenant, body: dict[str, object]
) -> tuple[uuid.UUID, bool]:
    """A new request id, or the one an earlier request with this Idempotency-Key got."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return uuid.uuid4(), True
    pool = request.app[POOL]
    presented = fingerprint(tenant, body)
    row = await pool.fetchrow(
        """
        INSERT INTO invite_requests (id, tenant_id, idempotency_key, body_fingerprint)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (tenant_id, idempotency_key) DO UPDATE SET tenant_id = EXCLUDED.tenant_id
        RETURNING id, body_fingerprint, (xmax = 0) AS inserted
        """,
        uuid.uuid4(),
        tenant.id,
        key,
        presented,
    )
    if not same_body(bytes(row["body_fingerprint"]), presented):
        raise IdempotencyKeyReused("this Idempotency-Key was used with another body")
    return row["id"], row["inserted"]


async def _invite(request: web.Request, model: type[BaseModel]) -> web.Response:
    enforce_rate_limit(request)
    token = await bearer_token(request, scope=INVITE_SCOPE)
    tenant = token.tenant
    form = validate(model, body := await read_json_object(request))
    role_id = getattr(form, "role_id", None)
    if role_id is not None and not await tenants.role_exists(
        request.app[POOL], tenant_id=tenant.id, role_id=role_id
    ):
        raise ValidationFailed(
            "roleId is not a role of this organization",
            errors=[{"field": "roleId", "message": "unknown role"}],
        )
    request_id, is_new = await request_id_for(request, tenant, body)
    event = InviteRequested(
        request_id=request_id,
        tenant_id=tenant.id,
        email=form.email,
        locale=form.locale or tenant.default_locale,
        name=getattr(form, "name", None),
        role_id=role_id,
    )
    try:
        # A retried key republishes: the worker ignores a request id it has seen.
        await request.app[PUBLISHER].publish("invite.requested", envelope(event))
    except BrokerUnavailable:
        if is_new and "Idempotency-Key" in request.headers:
            await request.app[POOL].execute("DELETE FROM invite_requests WHERE id = $1", request_id)
        raise ServiceUnavailable(
            "the message broker did not accept the request", headers={"Retry-After": "5"}
        ) from None
    return web.Response(status=204)


async def invite_register(request: web.Request) -> web.Response:
    """POST /api/v1/organization/users/register {email, locale?} -> 204"""
    return await _invite(request, InviteRegisterRequest)


async def invite_with_data(request: web.Request) -> web.Response:
    """POST /api/v1/organization/users/invite {email, name, roleId?, locale?} -> 204"""
    return await _invite(request, InviteRequest)
