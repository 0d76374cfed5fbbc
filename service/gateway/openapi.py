"""GET /openapi.json: the OpenAPI 3.1 description of the gateway, its schemas generated
from the same pydantic models that validate the requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.blynk import (
    PAGE_MAX,
    QUERY_MAX,
    SIZE_MAX,
    SORT_BY,
    BlynkProblem,
    CreateUser,
    OrgUser,
    UsersPage,
)
from schemas.http import (
    AcceptInvitation,
    ActivatedUser,
    ChangePasswordRequest,
    DeleteAccountRequest,
    InviteRegisterRequest,
    InviteRequest,
    LoginForm,
    Problem,
    RecoverPasswordRequest,
    RegisterRequest,
    RequestStatus,
    ResendRequest,
    ResetPasswordRequest,
    Token,
    TokenBody,
    User,
)
from schemas.users_admin import (
    NewRole,
    NewUser,
    RoleDetail,
    RolePage,
    RoleUpdate,
    UserPage,
    UserUpdate,
)
from schemas.webhooks import (
    WebhookCreate,
    WebhookCreated,
    WebhookEndpoint,
    WebhookList,
    WebhookReplayed,
)
from service.gateway.keys import SETTINGS
from service.gateway.users_admin import READ, WRITE

INPUTS = (
    RegisterRequest,
    ResendRequest,
    InviteRegisterRequest,
    InviteRequest,
    AcceptInvitation,
    LoginForm,
    TokenBody,
    RecoverPasswordRequest,
    ResetPasswordRequest,
    ChangePasswordRequest,
    DeleteAccountRequest,
    CreateUser,
    WebhookCreate,
    NewUser,
    UserUpdate,
    NewRole,
    RoleUpdate,
)
OUTPUTS = (
    User,
    ActivatedUser,
    Token,
    RequestStatus,
    Problem,
    UsersPage,
    OrgUser,
    BlynkProblem,
    WebhookEndpoint,
    WebhookCreated,
    WebhookList,
    WebhookReplayed,
    UserPage,
    RoleDetail,
    RolePage,
)
API_KEY = {"name": "apiKey", "in": "path", "required": True, "schema": {"type": "string"}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref(Problem)}},
    }


def _blynk(responses: dict[str, Any]) -> dict[str, Any]:
    """Answers of a Blynk-shaped route: its problems also carry Blynk's error body."""
    problem = {"application/problem+json": {"schema": _ref(BlynkProblem)}}
    return {
        status: {**answer, "content": problem}
        if "application/problem+json" in answer.get("content", {})
        else answer
        for status, answer in responses.items()
    }


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: type[BaseModel] | None = None,
    params: tuple[dict[str, Any], ...] = (),
    bearer: str | None = None,
    form: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        content = _json(body)
        if form:
            content["application/x-www-form-urlencoded"] = {"schema": _ref(body)}
        op["requestBody"] = {"required": True, "content": content}
    if bearer is not None:  # a tenant token's scope, or "" for a user's access token
        op["security"] = [{"bearer": [bearer] if bearer else []}]
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


COMMON = {
    "400": _problem("Invalid body"),
    "413": _problem("Body over 64 KiB"),
    "415": _problem("Body is not JSON"),
    "429": _problem("Rate limit exceeded (Retry-After)"),
    "503": _problem("Broker unavailable or queue full (Retry-After)"),
}
PENDING = {"description": "Accepted, outcome pending", "content": _json(RequestStatus)}
NOT_YET = {"description": "Accepted; the worker has not finished yet"}
BAD_TOKEN = _problem("Missing, unknown, expired or revoked access token (details: invalid_token)")


def _token(description: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": _json(Token)}}


def account_paths() -> dict[str, Any]:
    """The account life cycle (SPEC §10)."""
    api_key = (API_KEY,)
    return {
        "/{apiKey}/login": {
            "post": _op(
                "Sign in (OAuth 2 password grant, form-urlencoded); ?options=sliding",
                {
                    **_token("Signed in", "201"),
                    "401": _problem("Unknown API key, or the credentials were not accepted"),
                    **COMMON,
                },
                body=LoginForm,
                params=(
                    API_KEY,
                    {"name": "options", "in": "query", "schema": {"type": "string"}},
                ),
                form=True,
            ),
            "get": _op(
                "The signed-in user",
                {"200": {"description": "The user", "content": _json(User)}, "401": BAD_TOKEN},
                params=api_key,
                bearer="",
            ),
            "put": _op(
                "Exchange a token for a new one (the old one stops working)",
                {**_token("A new token"), "401": BAD_TOKEN, **COMMON},
                body=TokenBody,
                params=api_key,
            ),
            "delete": _op(
                "Sign out (end a token)",
                {"204": {"description": "Signed out"}, "401": BAD_TOKEN, **COMMON},
                body=TokenBody,
                params=api_key,
            ),
        },
        "/{apiKey}/recover-password": {
            "post": _op(
                "Mail a password recovery link (201 whether or not the user exists)",
                {
                    "201": {"description": "Requested"},
                    "401": _problem("Unknown or revoked API key"),
                    **COMMON,
                },
                body=RecoverPasswordRequest,
                params=api_key,
            ),
            "put": _op(
                "Set a new password with a recovery token",
                {
                    "200": {"description": "Password changed"},
                    "202": NOT_YET,
                    "401": _problem("Unknown or revoked API key"),
                    "404": _problem("Unknown or expired token"),
                    "409": _problem("Token already used"),
                    **COMMON,
                },
                body=ResetPasswordRequest,
                params=api_key,
            ),
        },
        "/{apiKey}/users/{userName}/change-password": {
            "put": _op(
                "Change a password: the user's own token (with oldPassword) or a tenant "
                "token with users:write",
                {
                    "200": {"description": "Password changed; every token of the user ended"},
                    "202": NOT_YET,
                    "401": BAD_TOKEN,
                    "403": _problem("Wrong old password, another user's, or no users:write"),
                    "404": _problem("No such user"),
                    **COMMON,
                },
                body=ChangePasswordRequest,
                params=(API_KEY, _path_param("userName")),
                bearer="",
            )
        },
        "/{apiKey}/users/me": {
            "delete": _op(
                "Delete one's own account (the password once more)",
                {
                    "204": {"description": "Erased"},
                    "202": NOT_YET,
                    "401": BAD_TOKEN,
                    "403": _problem("Wrong password"),
                    **COMMON,
                },
                body=DeleteAccountRequest,
                params=api_key,
                bearer="",
            )
        },
    }


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def org_user_paths() -> dict[str, Any]:
    """Organization users, Blynk-shaped (SPEC §11)."""
    paging = (
        _query("page", {"type": "integer", "minimum": 0, "maximum": PAGE_MAX, "default": 0}),
        _query("size", {"type": "integer", "minimum": 1, "maximum": SIZE_MAX, "default": 20}),
    )
    user_id = _query("userId", {"type": "integer", "minimum": 1}, required=True)
    refused = {
        "401": _problem("Missing, unknown or revoked token"),
        "429": _problem("Rate limit exceeded (Retry-After)"),
        "503": _problem("A dependency is unavailable (Retry-After)"),
    }
    reads = {"400": _problem("Bad parameter"), "403": _problem("Token lacks users:read")}
    writes = {"403": _problem("Token lacks users:write")}
    page = {"200": {"description": "A page of users", "content": _json(UsersPage)}}
    full = {"200": {"description": "The user", "content": _json(OrgUser)}}
    sort_by = sorted({name.title() for name in SORT_BY})
    return {
        "/api/v1/organization/users": {
            "get": _op(
                "List the organization's users (Blynk), by id",
                _blynk({**page, **reads, **refused}),
                params=paging,
                bearer="users:read",
            )
        },
        "/api/v1/organization/search/users": {
            "get": _op(
                "Search users by name or email (case-insensitive)",
                _blynk({**page, **reads, **refused}),
                params=(
                    _query("query", {"type": "string", "maxLength": QUERY_MAX}),
                    *paging,
                    _query("sortBy", {"enum": sort_by, "default": "User Id"}),
                    _query("sortOrder", {"enum": ["ASC", "DESC"], "default": "ASC"}),
                ),
                bearer="users:read",
            )
        },
        "/api/v1/organization/user": {
            "get": _op(
                "One user",
                _blynk({**full, **reads, "404": _problem("No such user"), **refused}),
                params=(user_id,),
                bearer="users:read",
            )
        },
        "/api/v1/organization/users/create": {
            "post": _op(
                "Create a user; without a password the user is emailed a link to set one",
                _blynk(
                    {
                        "204": {"description": "Created, invited, or there already"},
                        **writes,
                        "422": _problem("Idempotency-Key reused with another body"),
                        **refused,
                        **COMMON,
                    }
                ),
                body=CreateUser,
                params=({"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},),
                bearer="users:write",
            )
        },
        "/api/v1/organization/users/role": {
            "put": _op(
                "Give a user one role (Admin 1, Staff 2, User 3, ...); publishes user.updated",
                _blynk(
                    {
                        **full,
                        "400": _problem("Bad parameter"),
                        **writes,
                        "404": _problem("No such user, or no such role"),
                        **refused,
                    }
                ),
                params=(
                    user_id,
                    _query("roleId", {"type": "integer", "minimum": 1}, required=True),
                ),
                bearer="users:write",
            )
        },
    }


def webhook_paths() -> dict[str, Any]:
    """Webhook endpoints (SPEC §11), with a tenant token holding webhooks:manage."""
    denied = {
        "401": _problem("Missing, unknown or revoked token"),
        "403": _problem("Token lacks webhooks:manage"),
        "429": COMMON["429"],
    }
    endpoint_id = (_path_param("id"),)
    not_found = _problem("No such endpoint of the token's tenant")
    return {
        "/api/v1/webhooks": {
            "post": _op(
                "Register a webhook endpoint (its signing secret is shown this once)",
                {
                    "201": {"description": "Registered", "content": _json(WebhookCreated)},
                    "409": _problem("The tenant has the most endpoints allowed"),
                    **denied,
                    **COMMON,
                    "400": _problem(
                        "Invalid body, a URL that is not an allowed destination (https; no "
                        "loopback, private, link-local or multicast address), or an event "
                        "that is not public"
                    ),
                },
                body=WebhookCreate,
                bearer="webhooks:manage",
            ),
            "get": _op(
                "The tenant's webhook endpoints, with pending and parked deliveries",
                {"200": {"description": "Endpoints", "content": _json(WebhookList)}, **denied},
                bearer="webhooks:manage",
            ),
        },
        "/api/v1/webhooks/{id}": {
            "delete": _op(
                "Remove a webhook endpoint and its deliveries",
                {"204": {"description": "Removed"}, "404": not_found, **denied},
                params=endpoint_id,
                bearer="webhooks:manage",
            )
        },
        "/api/v1/webhooks/{id}/replay": {
            "post": _op(
                "Queue the endpoint's parked deliveries again (and enable it after a 410)",
                {
                    "200": {"description": "Replayed", "content": _json(WebhookReplayed)},
                    "404": not_found,
                    **denied,
                },
                params=endpoint_id,
                bearer="webhooks:manage",
            )
        },
    }


def _query_about(name: str, kind: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": kind}, "description": description}


PAGING = (
    _query_about("searchQuery", "string", "a phrase, matched case-insensitively"),
    _query_about("page", "integer", "from 1 (default 1)"),
    _query_about("rpp", "integer", "records per page, 1-100 (default 10)"),
    _query_about("sort", "string", "field|asc or field|desc"),
)
TENANT_TOKEN = {
    "401": _problem("Unknown API key; missing, unknown or revoked token, or another tenant's"),
    "403": _problem("The token lacks the scope"),
    "429": COMMON["429"],
}


DONE = {"204": {"description": "Done"}}
WRITES = {**TENANT_TOKEN, "400": COMMON["400"], "413": COMMON["413"], "415": COMMON["415"]}


def _collection(
    what: str,
    sorts: str,
    page: type[BaseModel],
    new: type[BaseModel],
    created: dict,
    *,
    filters: tuple = (),
    summary: str | None = None,
) -> dict[str, Any]:
    """GET a page of `what` (sorted by `sorts`); POST a new one (`created`: its answers)."""
    return {
        "get": _op(
            f"A page of {what}s (sorted by {sorts})",
            {"200": {"description": "The page", "content": _json(page)},
             "400": _problem("Bad paging query"), **TENANT_TOKEN},
            params=(API_KEY, *PAGING, *filters),
            bearer=READ,
        ),
        "post": _op(
            summary or f"Create a {what}", {**created, **WRITES}, body=new,
            params=(API_KEY,), bearer=WRITE,
        ),
    }  # fmt: skip


def _item(
    params: tuple,
    missing: dict,
    shown: tuple[str, type[BaseModel]],
    changed: tuple[str, type[BaseModel], str],
    deleted: tuple[str, str | None],
) -> dict[str, Any]:
    """GET one (200 `shown`), PUT what changes (204; 409 when it collides), DELETE (204;
    409 when it must stay)."""
    kept = {"409": _problem(deleted[1])} if deleted[1] else {}
    return {
        "get": _op(
            shown[0],
            {"200": {"description": "Found", "content": _json(shown[1])}, "404": missing,
             **TENANT_TOKEN},
            params=params,
            bearer=READ,
        ),
        "put": _op(
            changed[0],
            {**DONE, "404": missing, "409": _problem(changed[2]), **WRITES},
            body=changed[1],
            params=params,
            bearer=WRITE,
        ),
        "delete": _op(
            deleted[0], {**DONE, "404": missing, **kept, **TENANT_TOKEN}, params=params,
            bearer=WRITE,
        ),
    }  # fmt: skip


def back_office_paths() -> dict[str, Any]:
    """The Baasic-shaped users administration and roles lookup (SPEC §11)."""
    user = (API_KEY, _path_param("user"))
    missing_user = _problem("No such user")

    def action(summary: str) -> dict[str, Any]:
        answers = {**DONE, "404": missing_user, **TENANT_TOKEN}
        return {"put": _op(summary, answers, params=user, bearer=WRITE)}

    return {
        "/{apiKey}/users": _collection(
            "user", "userName, email, dateCreated or dateUpdated", UserPage, NewUser,
            {"201": {"description": "Created", "content": _json(User)}, "202": PENDING,
             "409": _problem("Email or userName taken"),
             "422": _problem("Idempotency-Key reused with another body"),
             "503": COMMON["503"]},
            filters=(_query_about("isApproved", "boolean", "only approved (true) or not (false)"),
                     _query_about("isLocked", "boolean", "only locked (true) or not (false)")),
            summary="Create a user (through the registration worker; source admin)",
        ),
        "/{apiKey}/users/{user}": _item(
            user, missing_user, ("A user, by userName or id", User),
            ("Change userName, email, name or roles (user.updated)", UserUpdate,
             "Email or userName taken"),
            ("Delete a user (user.deleted)", None),
        ),
        "/{apiKey}/users/{user}/exists": {
            "get": _op(
                "Whether such a user exists",
                {"204": {"description": "It does"}, "404": missing_user, **TENANT_TOKEN},
                params=user,
                bearer=READ,
            )
        },
        "/{apiKey}/users/{user}/approve": action("Approve (user.activated)"),
        "/{apiKey}/users/{user}/disapprove": action("Disapprove (user.updated; sessions end)"),
        "/{apiKey}/users/{user}/lock": action("Lock (user.locked; sessions end)"),
        "/{apiKey}/users/{user}/unlock": action("Unlock, also a lock-out (user.unlocked)"),
        "/{apiKey}/lookups/roles": _collection(
            "role", "name, description, dateCreated or dateUpdated", RolePage, NewRole,
            {"201": {"description": "Created", "content": _json(RoleDetail)},
             "409": _problem("Name taken")},
        ),
        "/{apiKey}/lookups/roles/{id}": _item(
            (API_KEY, _path_param("id")), _problem("No such role"), ("A role", RoleDetail),
            ("Rename or describe a role (Admin, Staff and User keep their names)", RoleUpdate,
             "Name taken, or a predefined role renamed"),
            ("Delete a role nobody holds", "Users hold it, or it is Admin, Staff or User"),
        ),
    }  # fmt: skip


def paths() -> dict[str, Any]:
    register_params = (
        API_KEY,
        {
            "name": "Prefer",
            "in": "header",
            "schema": {"type": "string"},
            "description": "RFC 7240: respond-async, or wait=N",
        },
        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
    )
    invite_params = ({"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},)
    invite_answers = _blynk(
        {
            "204": {"description": "Invitation requested"},
            "401": _problem("Missing, unknown or revoked token"),
            "403": _problem("Token lacks users:invite"),
            **COMMON,
        }
    )
    return {
        "/{apiKey}/register": {
            "post": _op(
                "Register a user (Baasic)",
                {
                    "200": {"description": "Registered", "content": _json(User)},
                    "202": PENDING,
                    "401": _problem("Unknown or revoked API key"),
                    "403": _problem("Registration disabled"),
                    "409": _problem("Email or userName taken"),
                    "422": _problem("Idempotency-Key reused with another body"),
                    **COMMON,
                },
                body=RegisterRequest,
                params=register_params,
            )
        },
        "/{apiKey}/register/requests/{requestId}": {
            "get": _op(
                "Status of a registration request",
                {
                    "200": {"description": "Registered", "content": _json(User)},
                    "202": PENDING,
                    "404": _problem("Unknown request"),
                    "409": _problem("Rejected: email or userName taken"),
                },
                params=(API_KEY, _path_param("requestId")),
            )
        },
        "/{apiKey}/register/activate/{activationToken}": {
            "put": _op(
                "Activate a user",
                {
                    "200": {
                        "description": "Activated and signed in (user and token fields)",
                        "content": _json(ActivatedUser),
                    },
                    "202": NOT_YET,
                    "404": _problem("Unknown or expired token"),
                    "409": _problem("Token already used"),
                },
                params=(API_KEY, _path_param("activationToken")),
            )
        },
        "/{apiKey}/register/resend": {
            "post": _op(
                "Resend the activation email",
                {"204": {"description": "Always"}, **COMMON},
                body=ResendRequest,
                params=(API_KEY,),
            )
        },
        "/{apiKey}/captcha/challenge": {
            "get": _op(
                "A proof-of-work captcha challenge (ALTCHA v1)",
                {"200": {"description": "{algorithm, challenge, maxnumber, salt, signature}"}},
                params=(API_KEY,),
            )
        },
        "/api/v1/organization/users/register": {
            "post": _op(
                "Invite a user by email (Blynk)",
                invite_answers,
                body=InviteRegisterRequest,
                params=invite_params,
                bearer="users:invite",
            )
        },
        "/api/v1/organization/users/invite": {
            "post": _op(
                "Invite a user with prefilled data",
                invite_answers,
                body=InviteRequest,
                params=invite_params,
                bearer="users:invite",
            )
        },
        "/invitations/{token}": {
            "get": _op(
                "The accept page (HTML)",
                {
                    "200": {"description": "Form", "content": {"text/html": {}}},
                    "404": {"description": "Unknown token", "content": {"text/html": {}}},
                    "410": {
                        "description": "Used, revoked or expired",
                        "content": {"text/html": {}},
                    },
                },
                params=(_path_param("token"),),
            ),
            "post": _op(
                "Submit the accept page's form",
                {
                    "200": {"description": "Account created", "content": {"text/html": {}}},
                    "400": {"description": "Form with errors", "content": {"text/html": {}}},
                    "410": {
                        "description": "Used, revoked or expired",
                        "content": {"text/html": {}},
                    },
                },
                body=AcceptInvitation,
                params=(_path_param("token"),),
                form=True,
            ),
        },
        "/api/v1/invitations/{token}/accept": {
            "post": _op(
                "Accept an invitation",
                {
                    "200": {"description": "Account created", "content": _json(User)},
                    "202": {"description": "Being created"},
                    "404": _problem("Unknown token"),
                    "409": _problem("The address registered meanwhile"),
                    "410": _problem("Used, revoked or expired"),
                    **COMMON,
                },
                body=AcceptInvitation,
                params=(_path_param("token"),),
            )
        },
        "/healthz": {"get": _op("Liveness", {"200": {"description": "Alive"}})},
        "/readyz": {
            "get": _op(
                "Readiness: Postgres and broker",
                {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {"200": {"description": "Text exposition format", "content": {"text/plain": {}}}},
            )
        },
        "/openapi.json": {"get": _op("This document", {"200": {"description": "OpenAPI 3.1"}})},
        **account_paths(),
        **org_user_paths(),
        **webhook_paths(),
        **back_office_paths(),
    }


@cache
def build_openapi() -> dict[str, Any]:
    """The whole document (built once per process)."""
    _, schemas = models_json_schema(
        [(m, "validation") for m in INPUTS] + [(m, "serialization") for m in OUTPUTS],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "registrar",
            "version": "0.1.0",
            "description": "Self-service registration (Baasic-compatible) and organization "
            "invitations and organization users (Blynk-compatible). Errors are RFC 9457 "
            "problem+json; on Blynk-shaped routes they also carry Blynk's "
            '`{"error": {"message"}}`.',
        },
        "paths": paths(),
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_view(request: web.Request) -> web.Response:
    document = build_openapi()
    if request.app[SETTINGS].metrics_port:  # /metrics is on another port
        document = {**document, "paths": dict(document["paths"])}
        del document["paths"]["/metrics"]
    return web.json_response(document)
