"""POST /{apiKey}/register and its status resource (Baasic-compatible)."""

from __future__ import annotations

import uuid

from aiohttp import web

from schemas.events import ActivationResendRequested, envelope
from schemas.http import RegisterRequest, RequestStatus, ResendRequest
from service import registrations, users
from service.errors import (
    CaptchaFailed,
    EmailTaken,
    NotFound,
    RegistrationDisabled,
    RegistrationFailed,
    UserNameTaken,
    ValidationFailed,
)
from service.gateway.auth import enforce_rate_limit, enforce_tenant_rate_limit, tenant_from_path
from service.gateway.body import model_response, read_json_object, validate
from service.gateway.idempotency import fingerprint
from service.gateway.keys import INTAKE, POOL, PUBLISHER, SETTINGS, WAITER
from service.gateway.prefer import parse_prefer
from service.locales import best_locale
from service.registrations import RequestRecord
from service.submissions import Submission, submit_registration
from service.tenants import Tenant

REJECTION_ERRORS = {"email_taken": EmailTaken, "username_taken": UserNameTaken}


def status_url(request: web.Request, request_id: uuid.UUID) -> str:
    return f"/{request.match_info['apiKey']}/register/requests/{request_id}"


def pending_response(request: web.Request, request_id: uuid.UUID, **headers: str) -> web.Response:
    href = status_url(request, request_id)
    body = RequestStatus(request_id=request_id, links={"self": {"href": href}})
    return web.json_response(
        body.model_dump(mode="json", by_alias=True),
        status=202,
        headers={"Location": href, **headers},
    )


async def outcome_response(
    request: web.Request, tenant: Tenant, record: RequestRecord, *, status: int = 200
) -> web.Response | None:
    """`status` with the user, 409 for a conflict, or None while still pending. A user an
    administrator created (POST /{apiKey}/users) comes with its back-office links, and a
    conflict is always a 409 (--duplicates silent hides addresses from strangers, not
    from the tenant's administrators)."""
    api_key = request.match_info["apiKey"]
    if record.status == "registered" and record.user_id is not None:
        user = await users.fetch_user(
            request.app[POOL], user_id=record.user_id, tenant_id=tenant.id, api_key=api_key
        )
        if user is not None and record.by_admin:
            links = users.admin_links(api_key, user.id)
            response = model_response(user.model_copy(update={"links": links}), status=status)
            if status == 201:
                response.headers["Location"] = links["self"].href
            return response
        if user is not None:
            return model_response(user, status=status)
    if record.status == "registered":
        raise NotFound("the user registered by this request no longer exists")
    if record.status == "rejected":
        silent = tenant.duplicates == "silent" and not record.by_admin
        if silent and record.reason in REJECTION_ERRORS:
            return await stand_in_response(request, tenant, record)
        error = REJECTION_ERRORS.get(record.reason or "", ValidationFailed)
        raise error(f"registration rejected: {record.reason}", requestId=str(record.id))
    if record.status == "failed":
        raise RegistrationFailed(
            "the registration could not be processed; submit it again later",
            requestId=str(record.id),
        )
    return None


async def stand_in_response(
    request: web.Request, tenant: Tenant, record: RequestRecord
) -> web.Response | None:
    """Under --duplicates silent, a taken address or userName gets a new registration's
    answer (the mailbox owner is mailed instead), so the endpoint cannot be used to probe
    addresses or user names."""
    if None in (record.shadow_user_id, record.email, record.user_name, record.decided_at):
        return None
    user = await users.stand_in_user(
        request.app[POOL],
        tenant_id=tenant.id,
        api_key=request.match_info["apiKey"],
        request_id=record.id,
        user_id=record.shadow_user_id,
        user_name=record.user_name,
        email=record.email,
        locale=record.locale or tenant.default_locale,
        created=record.decided_at,
    )
    return model_response(user)


async def await_outcome(
    request: web.Request, tenant: Tenant, request_id: uuid.UUID, *, timeout: float, status=200
) -> web.Response | None:
    async def check() -> web.Response | None:
        record = await registrations.get_request(
            request.app[POOL], tenant_id=tenant.id, request_id=request_id
        )
        if record is None:
            return None
        return await outcome_response(request, tenant, record, status=status)

    return await request.app[WAITER].wait_for(str(request_id), check, timeout=timeout)


def locale_of(request: web.Request, tenant: Tenant) -> str:
    return best_locale(request.headers.get("Accept-Language"), default=tenant.default_locale)


async def register(request: web.Request) -> web.Response:
    """POST /{apiKey}/register"""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    if not tenant.registration_enabled:
        raise RegistrationDisabled()
    body = await read_json_object(request)
    form = validate(RegisterRequest, body)
    problem = tenant.activation_url_problem(form.activation_url)
    if problem is not None:
        raise ValidationFailed(
            f"activationUrl {problem}", errors=[{"field": "activationUrl", "message": problem}]
        )
    if tenant.captcha == "pow" and not form.challenge_response:
        raise CaptchaFailed("challengeResponse is required")
    submission = Submission(
        tenant=tenant,
        form=form,
        fingerprint=fingerprint(tenant, body),
        idempotency_key=request.headers.get("Idempotency-Key"),
        locale=locale_of(request, tenant),
    )
    return await submit_and_answer(request, submission)


async def submit_and_answer(
    request: web.Request, submission: Submission, *, status: int = 200
) -> web.Response:
    """Record and publish a registration, then answer as `Prefer` asks (SPEC §3): 202 at
    once, or the outcome (`status` with the user, 409) once known, else 202."""
    preference = parse_prefer(request.headers.getall("Prefer", []))
    settings = request.app[SETTINGS]
    request_id = await submit_registration(
        request.app[POOL],
        request.app[INTAKE],
        request.app[PUBLISHER],
        submission,
        public_key=settings.seal_public_key or "",
    )
    if preference.respond_async:
        return pending_response(request, request_id, **{"Preference-Applied": "respond-async"})
    wait = preference.wait if preference.wait is not None else settings.register_wait_s
    response = await await_outcome(
        request, submission.tenant, request_id, timeout=wait, status=status
    )
    return response or pending_response(request, request_id)


async def request_status(request: web.Request) -> web.Response:
    """GET /{apiKey}/register/requests/{requestId}"""
    tenant = await tenant_from_path(request)
    try:
        request_id = uuid.UUID(request.match_info["requestId"])
    except ValueError:
        raise NotFound("no such registration request") from None
    record = await registrations.get_request(
        request.app[POOL], tenant_id=tenant.id, request_id=request_id
    )
    if record is None:
        raise NotFound("no such registration request")
    response = await outcome_response(request, tenant, record)
    return response or pending_response(request, request_id)


async def resend_activation(request: web.Request) -> web.Response:
    """POST /{apiKey}/register/resend {"email"} - always 204, so nobody learns who exists."""
    enforce_rate_limit(request)
    tenant = await tenant_from_path(request)
    enforce_tenant_rate_limit(request, tenant.id)
    form = validate(ResendRequest, await read_json_object(request))
    command = ActivationResendRequested(tenant_id=tenant.id, email=form.email)
    await request.app[PUBLISHER].publish("activation.resend.requested", envelope(command))
    return web.Response(status=204)
