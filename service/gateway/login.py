"""POST/GET/PUT/DELETE /{apiKey}/login: Baasic's token resource (SPEC §10)."""

from __future__ import annotations

from aiohttp import web

from schemas.http import LoginForm, TokenBody
from service import logins, sessions, users
from service.errors import BadRequest, Unauthorized
from service.gateway.auth import (
    BEARER_CHALLENGE,
    client_of,
    enforce_rate_limit,
    enforce_tenant_rate_limit,
    refuse_when_limited,
    tenant_from_path,
)
from service.gateway.body import content_type_of, model_response, read_json_object, validate
from service.gateway.keys import (
    CHECKER,
    LOGIN_ADDRESS_LIMITER,
    LOGIN_NAME_LIMITER,
    LOGIN_POLICY,
    POOL,
)
from service.tenants import Tenant

FORM = "application/x-www-form-urlencoded"
# Token answers must not be cached by anything between us and the client (RFC 6749 §5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def enforce_login_limits(request: web.Request, tenant: Tenant, login_name: str) -> None:
    """429 when this address, or anyone trying this login name, tried too often: guessing
    is slowed before the lock-out even counts (and unknown names are limited alike)."""
    checks = (
        (request.app[LOGIN_ADDRESS_LIMITER], client_of(request), "from this address"),
        (request.app[LOGIN_NAME_LIMITER], f"{tenant.id}:{login_name.lower()}", "for this user"),
    )
    for limiter, key, whom in checks:
        wait = limiter.take(key)
        refuse_when_limited(wait, f"too many sign-in attempts {whom}; retry in {wait} s")


async def _login_form(request: web.Request) -> LoginForm:
    """The password grant, form-urlencoded as OAuth 2 and Baasic send it (JSON accepted)."""
    if content_type_of(request) == FORM:
        fields: dict[str, object] = dict(await request.post())
    else:
        fields = await read_json_object(request)
    if fields.get("grant_type") not in (None, "password"):
        raise BadRequest("only grant_type=password is supported", error="unsupported_grant_type")
    return validate(LoginForm, fields)


def options_of(request: web.Request) -> set[str]:
    """Baasic's `options` query: a comma list (`sliding`, `session`)."""
    return {o.strip().lower() for o in request.query.get("options", "").split(",") if o.strip()}


async def login(request: web.Request) -> web.Response:
    """POST /{apiKey}/login: 201 with a token, or one 401 for every kind of failure."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    form = await _login_form(request)
    enforce_login_limits(request, tenant, form.username)
    grant = await logins.login(
        request.app[POOL],
        request.app[CHECKER],
        request.app[LOGIN_POLICY],
        tenant_id=tenant.id,
        login_name=form.username,
        password=form.password,
        sliding="sliding" in options_of(request),
    )
    return web.json_response(grant.body(), status=201, headers=NO_STORE)


def presented_token(request: web.Request) -> str:
    """The bearer token of the Authorization header (any case of "Bearer"), or 401."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized("a bearer token is required", headers=BEARER_CHALLENGE)
    return credentials.strip()


class InvalidToken(Unauthorized):
    slug, title = "invalid-token", "The access token is missing, expired or revoked"

    def __init__(self) -> None:
        # `details: invalid_token` makes Baasic's SDKs drop the token they hold.
        super().__init__(
            "the access token is unknown, expired or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="registrar", error="invalid_token"'},
            details="invalid_token",
        )


async def session_of(request: web.Request, tenant: Tenant) -> sessions.Session:
    """The caller's live session (its expiry slid), or 401 invalid_token."""
    session = await sessions.use_session(
        request.app[POOL], tenant_id=tenant.id, token=presented_token(request)
    )
    if session is None:
        raise InvalidToken()
    return session


async def current_user(request: web.Request) -> web.Response:
    """GET /{apiKey}/login: the signed-in user."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    session = await session_of(request, tenant)
    user = await users.fetch_user(
        request.app[POOL],
        user_id=session.user_id,
        tenant_id=tenant.id,
        api_key=request.match_info["apiKey"],
    )
    if user is None:
        raise InvalidToken()
    return model_response(user)


async def _token_of_body(request: web.Request) -> str:
    """The token a refresh or logout is about: the body's, else the bearer's."""
    form = validate(TokenBody, await read_json_object(request))
    if form.type.lower() != "bearer":
        raise BadRequest("only bearer tokens exist here")
    return form.token or presented_token(request)


async def refresh(request: web.Request) -> web.Response:
    """PUT /{apiKey}/login {token, type}: a new token; the old one stops working."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    token = await _token_of_body(request)
    grant = await sessions.refresh_session(request.app[POOL], tenant_id=tenant.id, token=token)
    if grant is None:
        raise InvalidToken()
    return web.json_response(grant.body(), headers=NO_STORE)


async def logout(request: web.Request) -> web.Response:
    """DELETE /{apiKey}/login {token, type}: 204, also for a token already gone (logging
    out twice is not an error, and the answer tells nothing about other tokens)."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    token = await _token_of_body(request)
    await sessions.close_session(request.app[POOL], tenant_id=tenant.id, token=token)
    return web.Response(status=204)
