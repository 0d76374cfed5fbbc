"""Organization invitations (Blynk-compatible): POST /api/v1/organization/users/..."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from schemas.events import InviteRequested
from schemas.http import InviteRegisterRequest, InviteRequest
from schemas.ids import uuid7
from service import tenants
from service.errors import ValidationFailed
from service.gateway.auth import bearer_token, enforce_rate_limit, enforce_tenant_rate_limit
from service.gateway.body import read_json_object, validate
from service.gateway.idempotency import fingerprint
from service.gateway.keys import POOL, PUBLISHER, SETTINGS
from service.submissions import submit_invitation

INVITE_SCOPE = "users:invite"


async def _invite(request: web.Request, model: type[BaseModel]) -> web.Response:
    enforce_rate_limit(request)
    token = await bearer_token(request, scope=INVITE_SCOPE)
    tenant = token.tenant
    enforce_tenant_rate_limit(request, tenant.id)
    form = validate(model, body := await read_json_object(request))
    role, role_id = getattr(form, "role_id", None), None
    if role is not None:
        role_id = await tenants.role_id_of(request.app[POOL], tenant_id=tenant.id, role=role)
        if role_id is None:
            raise ValidationFailed(
                "roleId is not a role of this organization",
                errors=[{"field": "roleId", "message": "unknown role"}],
            )
    data = InviteRequested(
        request_id=uuid7(),
        tenant_id=tenant.id,
        email=form.email,
        locale=form.locale or tenant.default_locale,
        name=getattr(form, "name", None),
        role_id=role_id,
    )
    await submit_invitation(
        request.app[POOL],
        request.app[PUBLISHER],
        data,
        idempotency_key=request.headers.get("Idempotency-Key"),
        fingerprint=fingerprint(tenant, body),
        grace_s=request.app[SETTINGS].command_grace_s,
    )
    return web.Response(status=204)


async def invite_register(request: web.Request) -> web.Response:
    """POST /api/v1/organization/users/register {email, locale?} -> 204"""
    return await _invite(request, InviteRegisterRequest)


async def invite_with_data(request: web.Request) -> web.Response:
    """POST /api/v1/organization/users/invite {email, name, roleId?, locale?} -> 204;
    roleId is the role's id or its number (Blynk's integer roleId)."""
    return await _invite(request, InviteRequest)
