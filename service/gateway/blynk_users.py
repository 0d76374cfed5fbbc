"""Organization users, Blynk-shaped (SPEC §11): GET /api/v1/organization/users,
/search/users and /user, POST /users/create, PUT /users/role.

Authorized by a tenant bearer token: `users:read` for GET, `users:write` otherwise.
Errors are problem+json carrying Blynk's `{"error": {"message"}}` as well (middleware).
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from schemas.blynk import CreateUser, PageQuery, RoleQuery, SearchQuery, UserQuery
from service import org_user_create, org_users
from service.gateway.auth import bearer_token, enforce_rate_limit, enforce_tenant_rate_limit
from service.gateway.body import read_json_object, validate
from service.gateway.idempotency import fingerprint
from service.gateway.keys import INTAKE, POOL, PUBLISHER, SETTINGS
from service.tenants import Tenant

READ, WRITE = "users:read", "users:write"
M = TypeVar("M", bound=BaseModel)


async def _tenant(request: web.Request, scope: str) -> Tenant:
    """The caller's organization: rate limits, then its bearer token with `scope`."""
    enforce_rate_limit(request)
    tenant = (await bearer_token(request, scope=scope)).tenant
    enforce_tenant_rate_limit(request, tenant.id)
    return tenant


def _json(model: BaseModel, status: int = 200) -> web.Response:
    # Nulls stay (`lastLoggedAt: null` before the first login), unlike Baasic's bodies.
    return web.json_response(model.model_dump(mode="json", by_alias=True), status=status)


def _query(request: web.Request, model: type[M]) -> M:
    return validate(model, dict(request.query))


async def _users_page(request: web.Request, model: type[PageQuery]) -> web.Response:
    tenant = await _tenant(request, READ)
    asked = _query(request, model)
    search = (
        asked if isinstance(asked, SearchQuery) else SearchQuery(page=asked.page, size=asked.size)
    )
    return _json(await org_users.users_page(request.app[POOL], tenant_id=tenant.id, search=search))


async def list_users(request: web.Request) -> web.Response:
    """GET /api/v1/organization/users?page=0&size=20 -> 200 {content, totalElements}"""
    return await _users_page(request, PageQuery)


async def search_users(request: web.Request) -> web.Response:
    """GET /api/v1/organization/search/users?query=&page=&size=&sortBy=&sortOrder="""
    return await _users_page(request, SearchQuery)


async def get_user(request: web.Request) -> web.Response:
    """GET /api/v1/organization/user?userId=N -> 200 full user / 404"""
    tenant = await _tenant(request, READ)
    user_id = _query(request, UserQuery).user_id
    return _json(await org_users.org_user(request.app[POOL], tenant_id=tenant.id, user_id=user_id))


async def change_role(request: web.Request) -> web.Response:
    """PUT /api/v1/organization/users/role?userId=N&roleId=M -> 200 full user / 404"""
    tenant = await _tenant(request, WRITE)
    ids = _query(request, RoleQuery)
    user = await org_users.change_role(
        request.app[POOL], tenant_id=tenant.id, user_id=ids.user_id, role_id=ids.role_id
    )
    return _json(user)


async def create_user(request: web.Request) -> web.Response:
    """POST /api/v1/organization/users/create {email, name, password?, locale?} -> 204,
    whether the user is created or was there already."""
    tenant = await _tenant(request, WRITE)
    form = validate(CreateUser, body := await read_json_object(request))
    await org_user_create.create_user(
        request.app[POOL],
        request.app[PUBLISHER],
        tenant,
        form,
        intake=request.app[INTAKE],
        public_key=request.app[SETTINGS].seal_public_key or "",
        idempotency_key=request.headers.get("Idempotency-Key"),
        fingerprint=fingerprint(tenant, body),
        grace_s=request.app[SETTINGS].command_grace_s,
    )
    return web.Response(status=204)
