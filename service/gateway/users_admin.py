"""The Baasic-shaped users administration (SPEC §11): `/{apiKey}/users…` with the
tenant's API key in the path and a bearer token of the same tenant, `users:read` for
GET, `users:write` otherwise. `{user}` is the user's userName or id."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from schemas.http import is_plain_text
from schemas.users_admin import NewUser, UserPage, UserUpdate
from service import paging, user_admin, user_listing, users
from service.errors import NotFound, ValidationFailed
from service.gateway.auth import tenant_token
from service.gateway.body import model_response, read_json_object, validate
from service.gateway.idempotency import fingerprint
from service.gateway.keys import POOL
from service.gateway.register import locale_of, submit_and_answer
from service.submissions import Submission

READ, WRITE = "users:read", "users:write"
NO_CONTENT = 204


def _user(request: web.Request) -> str:
    """The `{user}` path segment; text no user can have is simply no user (404)."""
    user = request.match_info["user"]
    if not is_plain_text(user) or len(user) > 320:
        raise NotFound("no such user")
    return user


def _done() -> web.Response:
    return web.Response(status=NO_CONTENT)


async def list_users(request: web.Request) -> web.Response:
    """GET /{apiKey}/users?searchQuery=&page=1&rpp=10&sort=userName|asc&isApproved=&isLocked="""
    tenant = await tenant_token(request, scope=READ)
    asked = paging.parse_page_request(
        request.query,
        sorts=tuple(user_listing.SORTS),
        default_sort=user_listing.DEFAULT_SORT,
        flags=tuple(user_listing.FLAGS),
    )
    api_key = request.match_info["apiKey"]
    items, total = await user_listing.list_users(
        request.app[POOL],
        tenant_id=tenant.id,
        request=asked,
        links_of=lambda user_id: users.admin_links(api_key, user_id),
    )
    page = UserPage(
        item=items,
        page=asked.page,
        records_per_page=asked.rpp,
        total_records=total,
        search_query=asked.search or "",
        sort=asked.sort_text,
        links=paging.page_links(f"/{api_key}/users", asked, total),
    )
    return model_response(page)


async def get_user(request: web.Request) -> web.Response:
    """GET /{apiKey}/users/{user}: 200 with the user, or 404."""
    tenant = await tenant_token(request, scope=READ)
    pool, api_key = request.app[POOL], request.match_info["apiKey"]
    found = await users.find_by_name_or_id(pool, tenant_id=tenant.id, name_or_id=_user(request))
    user = None
    if found is not None:
        user = await users.fetch_user(pool, user_id=found["id"], tenant_id=tenant.id, api_key=None)
    if user is None:
        raise NotFound("no such user")
    return model_response(user.model_copy(update={"links": users.admin_links(api_key, user.id)}))


async def user_exists(request: web.Request) -> web.Response:
    """GET /{apiKey}/users/{user}/exists: 204 when there is such a user, else 404."""
    tenant = await tenant_token(request, scope=READ)
    found = await users.find_by_name_or_id(
        request.app[POOL], tenant_id=tenant.id, name_or_id=_user(request)
    )
    if found is None:
        raise NotFound("no such user")
    return _done()


async def create_user(request: web.Request) -> web.Response:
    """POST /{apiKey}/users: 201 with the user once the registration worker created it
    (source admin); 409 email or userName taken, 400 invalid. `Prefer` and
    `Idempotency-Key` as for POST /{apiKey}/register."""
    tenant = await tenant_token(request, scope=WRITE)
    body = await read_json_object(request)
    form = validate(NewUser, body)
    if form.activation_url is not None:
        problem = tenant.activation_url_problem(form.activation_url)
        if problem is not None:
            raise ValidationFailed(
                f"activationUrl {problem}", errors=[{"field": "activationUrl", "message": problem}]
            )
    roles = await user_admin.resolve_roles(
        request.app[POOL], tenant.id, ["User"] if form.roles is None else form.roles
    )
    submission = Submission(
        tenant=tenant,
        form=form,
        # Apart from self-registrations: one Idempotency-Key cannot stand for both.
        fingerprint=fingerprint(tenant, {**body, "(admin)": True}),
        idempotency_key=request.headers.get("Idempotency-Key"),
        locale=locale_of(request, tenant),
        admin={
            "name": form.name or "",
            "roles": sorted(roles.values()),
            "isApproved": form.is_approved,
            "notify": form.send_email_notification,
        },
    )
    return await submit_and_answer(request, submission, status=201)


async def update_user(request: web.Request) -> web.Response:
    """PUT /{apiKey}/users/{user}: 204 (user.updated when something changed); 404, 409."""
    tenant = await tenant_token(request, scope=WRITE)
    form = validate(UserUpdate, await read_json_object(request))
    await user_admin.update_user(
        request.app[POOL], tenant_id=tenant.id, user=_user(request), form=form
    )
    return _done()


def _change(apply: Callable[..., Awaitable[None]]) -> Handler:
    """A view that applies one change to the user of the path and answers 204 (404 when
    there is no such user). A body, if any, is ignored: Baasic's SDKs send the user
    object, or {}, with approve, lock and the like."""

    async def view(request: web.Request) -> web.Response:
        tenant = await tenant_token(request, scope=WRITE)
        await apply(request.app[POOL], tenant_id=tenant.id, user=_user(request))
        return _done()

    return view


# DELETE /{apiKey}/users/{user}: erased (user.deleted).
delete_user = _change(user_admin.delete_user)
# PUT /{apiKey}/users/{user}/approve|disapprove|lock|unlock: user.activated, user.updated,
# user.locked (reason admin), user.unlocked; nothing when it is so already.
approve = _change(functools.partial(user_admin.set_approved, approved=True))
disapprove = _change(functools.partial(user_admin.set_approved, approved=False))
lock = _change(user_admin.lock)
unlock = _change(user_admin.unlock)


# Added after DELETE /{apiKey}/users/me, whose literal path keeps winning for DELETE.
ROUTES = (
    ("GET", "/{apiKey}/users", list_users),
    ("POST", "/{apiKey}/users", create_user),
    ("GET", "/{apiKey}/users/{user}", get_user),
    ("PUT", "/{apiKey}/users/{user}", update_user),
    ("DELETE", "/{apiKey}/users/{user}", delete_user),
    ("GET", "/{apiKey}/users/{user}/exists", user_exists),
    ("PUT", "/{apiKey}/users/{user}/approve", approve),
    ("PUT", "/{apiKey}/users/{user}/disapprove", disapprove),
    ("PUT", "/{apiKey}/users/{user}/lock", lock),
    ("PUT", "/{apiKey}/users/{user}/unlock", unlock),
)
