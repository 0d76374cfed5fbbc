"""Accepting an invitation: the hosted HTML page (no JavaScript) and the JSON API.

Viewing the page never consumes the token (mail scanners open links); only a submitted
form or API call does, through the invitation worker.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from schemas.events import InvitationAcceptRequested, envelope
from schemas.http import AcceptInvitation
from service import i18n, invitations, users
from service.errors import (
    EmailTaken,
    InvitationGone,
    NotFound,
    UnsupportedMediaType,
)
from service.gateway.auth import enforce_rate_limit, enforce_tenant_rate_limit
from service.gateway.body import content_type_of, model_response, read_json_object, validate
from service.gateway.keys import POOL, PUBLISHER, SETTINGS, WAITER
from service.invitations import Decision, Invitation
from service.locales import best_locale
from service.sealing import seal

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
STATUS_BY_REASON = {"unknown": 404, "gone": 410, "taken": 409, "pending": 202}


def page(
    template: str, *, locale: str, default: str | None, status: int = 200, **context: object
) -> web.Response:
    chain = i18n.fallback_chain(locale, default=default)
    html = (
        i18n.environment("service.gateway", chain)
        .get_template(template)
        .render(lang=chain[0].replace("_", "-"), **context)
    )
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def message_page(
    reason: str, *, invitation: Invitation | None, request: web.Request
) -> web.Response:
    if invitation is None:
        locale = best_locale(request.headers.get("Accept-Language"), default="en")
        return page(
            "invitation_message.html",
            locale=locale,
            default=None,
            status=STATUS_BY_REASON[reason],
            reason=reason,
            organization="registrar",
        )
    return page(
        "invitation_message.html",
        locale=invitation.locale,
        default=invitation.default_locale,
        status=STATUS_BY_REASON[reason],
        reason=reason,
        organization=invitation.organization,
    )


def form_errors(exc: ValidationError) -> dict[str, bool]:
    """Which of the page's fields to flag (messages come from the translated template)."""
    flagged: dict[str, bool] = {}
    for err in exc.errors(include_input=False):
        field = str(err["loc"][0]) if err["loc"] else "confirmPassword"
        flagged[{"confirmPassword": "confirm"}.get(field, field)] = True
    return flagged


async def submit(
    request: web.Request, invitation: Invitation, form: AcceptInvitation
) -> Decision | None:
    """Publish the accept command and wait for the worker's decision (None: still pending)."""
    settings = request.app[SETTINGS]
    command = envelope(
        InvitationAcceptRequested(
            invitation_id=invitation.id,
            tenant_id=invitation.tenant_id,
            name=form.name,
            sealed_password=seal(form.password, settings.seal_public_key or ""),
        )
    )
    # BrokerUnavailable propagates: the problem middleware answers 503.
    await request.app[PUBLISHER].publish("invitation.accept.requested", command)
    pool = request.app[POOL]
    return await request.app[WAITER].wait_for(
        str(invitation.id),
        lambda: invitations.decision_for(pool, invitation.id, command.id),
        timeout=settings.register_wait_s,
    )


async def show_form(request: web.Request) -> web.Response:
    """GET /invitations/{token}"""
    enforce_rate_limit(request)
    invitation = await invitations.find_by_token(request.app[POOL], request.match_info["token"])
    if invitation is None:
        return message_page("unknown", invitation=None, request=request)
    enforce_tenant_rate_limit(request, invitation.tenant_id)
    if not invitation.usable:
        return message_page("gone", invitation=invitation, request=request)
    return form_page(invitation, name=invitation.name or "", errors={})


def form_page(invitation: Invitation, *, name: str, errors: dict[str, bool]) -> web.Response:
    return page(
        "invitation_form.html",
        locale=invitation.locale,
        default=invitation.default_locale,
        status=400 if errors else 200,
        organization=invitation.organization,
        email=invitation.email,
        name=name,
        errors=errors,
    )


async def accept_form(request: web.Request) -> web.Response:
    """POST /invitations/{token} (the page's form)"""
    enforce_rate_limit(request)
    if content_type_of(request) not in FORM_TYPES:
        raise UnsupportedMediaType("the form must be posted as a web form")
    invitation = await invitations.find_by_token(request.app[POOL], request.match_info["token"])
    if invitation is None:
        return message_page("unknown", invitation=None, request=request)
    enforce_tenant_rate_limit(request, invitation.tenant_id)
    if not invitation.usable:
        return message_page("gone", invitation=invitation, request=request)
    fields = await request.post()
    values = {key: str(fields.get(key, "")) for key in ("name", "password", "confirmPassword")}
    try:
        form = AcceptInvitation.model_validate(values)
    except ValidationError as exc:
        return form_page(invitation, name=values["name"], errors=form_errors(exc))
    decision = await submit(request, invitation, form)
    if decision is None:
        return message_page("pending", invitation=invitation, request=request)
    if decision.mine and decision.decision == "accepted":
        return page(
            "invitation_done.html",
            locale=invitation.locale,
            default=invitation.default_locale,
            organization=invitation.organization,
            name=form.name,
            email=invitation.email,
        )
    reason = "taken" if decision.mine and decision.decision == "email_taken" else "gone"
    return message_page(reason, invitation=invitation, request=request)


async def accept_api(request: web.Request) -> web.Response:
    """POST /api/v1/invitations/{token}/accept {name, password, confirmPassword}"""
    enforce_rate_limit(request)
    invitation = await invitations.find_by_token(request.app[POOL], request.match_info["token"])
    if invitation is None:
        raise NotFound("unknown invitation")
    enforce_tenant_rate_limit(request, invitation.tenant_id)
    if not invitation.usable:
        raise InvitationGone()
    form = validate(AcceptInvitation, await read_json_object(request))
    decision = await submit(request, invitation, form)
    if decision is None:
        return web.json_response({"status": "pending"}, status=202)
    if decision.mine and decision.decision == "accepted" and decision.user_id is not None:
        user = await users.fetch_user(
            request.app[POOL],
            user_id=decision.user_id,
            tenant_id=invitation.tenant_id,
            api_key=None,
        )
        if user is not None:
            return model_response(user)
    if decision.mine and decision.decision == "email_taken":
        raise EmailTaken("an account with this email address already exists")
    raise InvitationGone()
