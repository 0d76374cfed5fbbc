"""Password recovery, password change and deleting one's own account (SPEC §10).

The gateway checks what it can (tokens, old passwords with bounded argon2, the caller's
right), then asks the registration worker to make the change (new passwords travel
sealed, as at registration) and waits for it, like activation does.
"""

from __future__ import annotations

from aiohttp import web

from schemas.events import (
    AccountDeleteRequested,
    Command,
    PasswordChangeRequested,
    PasswordRecoveryRequested,
    PasswordResetRequested,
    envelope,
    routing_key_of,
)
from schemas.http import (
    ChangePasswordRequest,
    DeleteAccountRequest,
    RecoverPasswordRequest,
    ResetPasswordRequest,
    is_plain_text,
)
from service import account_requests, captcha, logins, sessions, single_use, users
from service.amqp import BrokerUnavailable
from service.errors import CaptchaFailed, Forbidden, NotFound, ValidationFailed
from service.gateway.auth import enforce_rate_limit, enforce_tenant_rate_limit, tenant_from_path
from service.gateway.body import read_json_object, validate
from service.gateway.keys import (
    CHECKER,
    LOGIN_POLICY,
    POOL,
    PUBLISHER,
    SETTINGS,
    TENANTS,
    WAITER,
)
from service.gateway.login import InvalidToken, enforce_login_limits, presented_token
from service.sealing import seal
from service.tenants import Tenant

# The worker that applies account commands records each one it applied under this name.
CONSUMER = "registration"
APPLIED = "SELECT true FROM processed_messages WHERE consumer = $1 AND message_id = $2"


class WrongPassword(Forbidden):
    slug, title = "wrong-password", "The password given to confirm this is wrong"


def pending() -> web.Response:
    return web.json_response({"status": "pending"}, status=202)


async def _tenant(request: web.Request) -> Tenant:
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    return tenant


def _sealed(request: web.Request, password: str) -> str:
    return seal(password, request.app[SETTINGS].seal_public_key or "")


async def _apply(request: web.Request, data: Command, kind: account_requests.Kind) -> bool:
    """Authorize an account command, publish it and wait until the worker applied it
    (False: not yet)."""
    command = envelope(data)
    pool = request.app[POOL]
    await account_requests.authorize(
        pool, command_id=command.id, tenant_id=data.tenant_id, user_id=data.user_id, kind=kind
    )
    try:
        await request.app[PUBLISHER].publish(routing_key_of(data), command)
    except BrokerUnavailable:
        await account_requests.withdraw(pool, command.id)
        raise

    async def applied() -> bool | None:
        return await pool.fetchval(APPLIED, CONSUMER, command.id)

    done = await request.app[WAITER].wait_for(
        str(command.id), applied, timeout=request.app[SETTINGS].register_wait_s
    )
    return bool(done)


async def request_recovery(request: web.Request) -> web.Response:
    """POST /{apiKey}/recover-password: 201 whether or not the user exists; the worker
    mails a link to an existing user (at most one per REGISTRAR_RESEND_INTERVAL_S)."""
    tenant = await _tenant(request)
    form = validate(RecoverPasswordRequest, await read_json_object(request))
    problem = tenant.recover_url_problem(form.recover_url)
    if problem is not None:
        raise ValidationFailed(
            f"recoverUrl {problem}", errors=[{"field": "recoverUrl", "message": problem}]
        )
    enforce_login_limits(request, tenant, form.user_name)
    pool = request.app[POOL]
    if tenant.captcha == "pow":
        if not form.challenge_response:
            raise CaptchaFailed("challengeResponse is required")
        async with pool.acquire() as conn:
            await captcha.consume_solution(
                conn,
                tenant,
                identifier=form.challenge_identifier,
                response=form.challenge_response,
            )
    data = PasswordRecoveryRequested(
        tenant_id=tenant.id, login=form.user_name, recover_url=form.recover_url
    )
    try:
        await request.app[PUBLISHER].publish(routing_key_of(data), envelope(data))
    except BrokerUnavailable:
        if tenant.captcha == "pow":  # the client may retry with the same solution
            await captcha.release_solution(pool, form.challenge_identifier)
        raise
    return web.Response(status=201)


async def reset_password(request: web.Request) -> web.Response:
    """PUT /{apiKey}/recover-password: 200 once the new password is set (404 unknown or
    expired token, 409 used, 400 password policy)."""
    tenant = await _tenant(request)
    form = validate(ResetPasswordRequest, await read_json_object(request))
    sealed = _sealed(request, form.new_password)
    user_id = await single_use.consume(
        request.app[POOL],
        request.app[PUBLISHER],
        request.app[WAITER],
        single_use.RECOVERY,
        tenant_id=tenant.id,
        token=form.password_recovery_token,
        command_for=lambda token_id: PasswordResetRequested(
            token_id=token_id, tenant_id=tenant.id, sealed_password=sealed
        ),
        timeout=request.app[SETTINGS].register_wait_s,
        authorize="reset",
    )
    if user_id is None:
        return pending()
    return web.json_response({"status": "changed"})


async def _confirm_password(request: web.Request, tenant: Tenant, user, password: str) -> None:
    """403 unless `password` is the signed-in user's (a wrong one counts as a failed login)."""
    enforce_login_limits(request, tenant, user["user_name"])
    matches = await logins.check_password(
        request.app[POOL], request.app[CHECKER], request.app[LOGIN_POLICY], user, password
    )
    if not matches:
        raise WrongPassword("the password is wrong")


async def _change_target(request: web.Request, tenant: Tenant, form: ChangePasswordRequest):
    """(user, by): whose password may change and on whose authority. The user's own token
    needs the old password; a tenant token needs the `users:write` scope."""
    token = presented_token(request)
    pool = request.app[POOL]
    name_or_id = request.match_info["userName"]
    if not is_plain_text(name_or_id):
        raise NotFound("no such user")
    session = await sessions.use_session(pool, tenant_id=tenant.id, token=token)
    if session is not None:
        user = await users.find_by_id(pool, session.user_id)
        if user is None:
            raise InvalidToken()
        if name_or_id.lower() not in (user["user_name"].lower(), str(user["id"])):
            raise Forbidden("a user may change only their own password")
        if form.old_password is None:
            raise ValidationFailed(
                "oldPassword is required",
                errors=[{"field": "oldPassword", "message": "required to change your password"}],
            )
        await _confirm_password(request, tenant, user, form.old_password)
        return user, "self"
    access = await request.app[TENANTS].access_token(token)
    if access is None or access.tenant.id != tenant.id:
        raise InvalidToken()
    if "users:write" not in access.scopes:
        raise Forbidden("the token lacks the users:write scope")
    user = await users.find_by_name_or_id(pool, tenant_id=tenant.id, name_or_id=name_or_id)
    if user is None:
        raise NotFound("no such user")
    return user, "admin"


async def change_password(request: web.Request) -> web.Response:
    """PUT /{apiKey}/users/{userName}/change-password: 200 once changed; every token of
    the user is revoked, as after a reset."""
    tenant = await _tenant(request)
    form = validate(ChangePasswordRequest, await read_json_object(request))
    user, by = await _change_target(request, tenant, form)
    done = await _apply(
        request,
        PasswordChangeRequested(
            user_id=user["id"],
            tenant_id=tenant.id,
            sealed_password=_sealed(request, form.new_password),
            send_mail_notification=form.notify,
            by=by,
        ),
        "change",
    )
    return web.json_response({"status": "changed"}) if done else pending()


async def delete_me(request: web.Request) -> web.Response:
    """DELETE /{apiKey}/users/me {password}: 204 once the account is erased."""
    tenant = await _tenant(request)
    form = validate(DeleteAccountRequest, await read_json_object(request))
    pool = request.app[POOL]
    session = await sessions.use_session(pool, tenant_id=tenant.id, token=presented_token(request))
    user = None if session is None else await users.find_by_id(pool, session.user_id)
    if user is None:
        raise InvalidToken()
    await _confirm_password(request, tenant, user, form.password)
    done = await _apply(
        request, AccountDeleteRequested(user_id=user["id"], tenant_id=tenant.id), "delete"
    )
    return web.Response(status=204) if done else pending()
