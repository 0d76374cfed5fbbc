"""The Baasic-shaped roles lookup (SPEC §11): `/{apiKey}/lookups/roles…`, authorized
like the users administration (service.gateway.users_admin)."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp import web

from schemas.http import Link
from schemas.users_admin import NewRole, RoleDetail, RolePage, RoleUpdate
from service import paging, roles
from service.errors import NotFound
from service.gateway.auth import tenant_token
from service.gateway.body import model_response, read_json_object, validate
from service.gateway.keys import POOL
from service.gateway.users_admin import READ, WRITE
from service.users import as_uuid


def _path(request: web.Request) -> str:
    return f"/{request.match_info['apiKey']}/lookups/roles"


def _role_id(request: web.Request) -> uuid.UUID:
    role_id = as_uuid(request.match_info["id"])
    if role_id is None:
        raise NotFound("no such role")
    return role_id


def _detail(request: web.Request, row: asyncpg.Record) -> RoleDetail:
    return RoleDetail(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        date_created=row["created_at"],
        date_updated=row["updated_at"],
        links={"self": Link(href=f"{_path(request)}/{row['id']}")},
    )


async def list_roles(request: web.Request) -> web.Response:
    """GET /{apiKey}/lookups/roles?searchQuery=&page=1&rpp=10&sort=name|asc"""
    tenant = await tenant_token(request, scope=READ)
    asked = paging.parse_page_request(
        request.query, sorts=tuple(roles.SORTS), default_sort=roles.DEFAULT_SORT
    )
    rows, total = await roles.list_roles(request.app[POOL], tenant_id=tenant.id, request=asked)
    page = RolePage(
        item=[_detail(request, row) for row in rows],
        page=asked.page,
        records_per_page=asked.rpp,
        total_records=total,
        search_query=asked.search or "",
        sort=asked.sort_text,
        links=paging.page_links(_path(request), asked, total),
    )
    return model_response(page)


async def get_role(request: web.Request) -> web.Response:
    """GET /{apiKey}/lookups/roles/{id}: 200 or 404."""
    tenant = await tenant_token(request, scope=READ)
    row = await roles.get_role(request.app[POOL], tenant_id=tenant.id, role_id=_role_id(request))
    return model_response(_detail(request, row))


async def create_role(request: web.Request) -> web.Response:
    """POST /{apiKey}/lookups/roles: 201 with the role; 409 when the name is taken."""
    tenant = await tenant_token(request, scope=WRITE)
    form = validate(NewRole, await read_json_object(request))
    row = await roles.create_role(
        request.app[POOL], tenant_id=tenant.id, name=form.name, description=form.description
    )
    detail = _detail(request, row)
    response = model_response(detail, status=201)
    response.headers["Location"] = detail.links["self"].href
    return response


async def update_role(request: web.Request) -> web.Response:
    """PUT /{apiKey}/lookups/roles/{id}: 204; 404, 409 name taken or predefined role."""
    tenant = await tenant_token(request, scope=WRITE)
    form = validate(RoleUpdate, await read_json_object(request))
    await roles.update_role(
        request.app[POOL],
        tenant_id=tenant.id,
        role_id=_role_id(request),
        name=form.name,
        description=form.description,
    )
    return web.Response(status=204)


async def delete_role(request: web.Request) -> web.Response:
    """DELETE /{apiKey}/lookups/roles/{id}: 204; 404, 409 held by users or predefined."""
    tenant = await tenant_token(request, scope=WRITE)
    await roles.delete_role(request.app[POOL], tenant_id=tenant.id, role_id=_role_id(request))
    return web.Response(status=204)


ROUTES = (
    ("GET", "/{apiKey}/lookups/roles", list_roles),
    ("POST", "/{apiKey}/lookups/roles", create_role),
    ("GET", "/{apiKey}/lookups/roles/{id}", get_role),
    ("PUT", "/{apiKey}/lookups/roles/{id}", update_role),
    ("DELETE", "/{apiKey}/lookups/roles/{id}", delete_role),
)
