"""The gateway's app factory: routes, middleware and resources (one cleanup_ctx each)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from service import amqp, captcha, metrics, outcomes, startup
from service.gateway import (
    accept,
    account,
    activation,
    blynk_users,
    cors,
    health,
    invite,
    login,
    openapi,
    register,
    roles_admin,
    users_admin,
    webhooks,
)
from service.gateway.keys import (
    CHECKER,
    INTAKE,
    LIMITER,
    LOGIN_ADDRESS_LIMITER,
    LOGIN_NAME_LIMITER,
    LOGIN_POLICY,
    POOL,
    PUBLISHER,
    SETTINGS,
    SUPERVISOR,
    TENANT_LIMITER,
    TENANTS,
    WAITER,
)
from service.gateway.middleware import problem_middleware
from service.intake import Intake
from service.listen import Listener
from service.logins import LoginPolicy
from service.outcomes import OutcomeWaiter
from service.passwords import PasswordChecker, password_hasher
from service.ratelimit import RateLimiter
from service.settings import Settings
from service.supervisor import Supervisor
from service.tenant_cache import CHANNEL as TENANTS_CHANNEL
from service.tenant_cache import TenantCache


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    """The pool, and the intake that records registrations through it in batches."""
    settings, supervisor = app[SETTINGS], app[SUPERVISOR]
    app[POOL] = pool = await startup.open_pool(settings)
    app[INTAKE] = intake = Intake(
        pool, grace_s=settings.command_grace_s, captcha_validity=captcha.VALIDITY
    )
    task = supervisor.start("intake", intake.run, grace_s=0)
    yield
    await supervisor.cancel(task, grace_s=0)
    with contextlib.suppress(Exception):  # best effort: the relay covers what is left
        await intake.flush()
    await pool.close()


def _listen(
    app: web.Application, name: str, channel: str, on_notify: Callable[[str], None]
) -> tuple[Listener, asyncio.Task[None]]:
    """A supervised LISTEN connection (reopened after a database restart) in /readyz."""
    settings, supervisor = app[SETTINGS], app[SUPERVISOR]
    listener = Listener(
        settings.database_session_url,
        channel,
        on_notify,
        connect_timeout=settings.db_connect_timeout_s,
    )
    task = supervisor.start(name, listener.run, grace_s=0)
    supervisor.health.probe(name, listener.status)
    return listener, task


async def _outcome_listener(app: web.Application) -> AsyncIterator[None]:
    """LISTEN for workers' decisions."""
    app[WAITER] = waiter = OutcomeWaiter(limit=app[SETTINGS].max_waiters)
    _, task = _listen(app, "outcome-listener", outcomes.CHANNEL, waiter.notify)
    yield
    await app[SUPERVISOR].cancel(task, grace_s=0)


async def _tenant_cache(app: web.Application) -> AsyncIterator[None]:
    """Tenants and tokens cached, forgotten whenever either table changes (LISTEN)."""
    listener: Listener | None = None
    app[TENANTS] = cache = TenantCache(app[POOL], trusted=lambda: listener.alive)
    listener, task = _listen(app, "tenant-listener", TENANTS_CHANNEL, cache.invalidate)
    yield
    await app[SUPERVISOR].cancel(task, grace_s=0)


async def _password_checker(app: web.Application) -> AsyncIterator[None]:
    """argon2 verifications (login, password confirmations) on threads of their own."""
    settings = app[SETTINGS]
    app[CHECKER] = checker = PasswordChecker(
        password_hasher(settings),
        threads=settings.password_check_threads,
        queue=settings.password_check_queue,
        nice=settings.password_check_nice,
    )
    yield
    checker.close()


async def _rabbitmq(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connection = await startup.open_amqp(settings)
    app[PUBLISHER] = await amqp.publisher_for(connection, settings)
    yield
    await connection.close()


class _BaasicRoutes:
    """Baasic's SDKs add a trailing slash to many routes (`…/activate/{token}/`): every
    Baasic-shaped route answers with and without it (SPEC §3), the same handler, no
    redirect (a redirected PUT from a browser would need a second preflight); and each
    answers CORS preflights (service.gateway.cors)."""

    def __init__(self, router: web.UrlDispatcher) -> None:
        self._router = router
        self._preflighted: set[str] = set()

    def add(self, method: str, path: str, handler) -> None:
        for variant in (path, path + "/"):
            self._router.add_route(method, variant, handler)
            if variant not in self._preflighted:
                # Browsers ask first (CORS preflight) when a page of another origin calls.
                self._router.add_route("OPTIONS", variant, cors.preflight)
                self._preflighted.add(variant)


def create_app(settings: Settings, supervisor: Supervisor | None = None) -> web.Application:
    """The gateway application; resources open on startup and close on cleanup.

    `supervisor` owns the gateway's background tasks (the LISTEN connection); the process
    root passes its own so that a crashed task ends the process. Tests may leave it out.
    """
    if not settings.seal_public_key:
        raise ValueError("REGISTRAR_SEAL_PUBLIC_KEY is not set (see `registrar keys generate`)")
    app = web.Application(
        middlewares=[cors.cors_middleware, problem_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[SUPERVISOR] = supervisor or Supervisor(
        asyncio.Event(), backoff_max=settings.restart_backoff_max_s
    )

    def limiter(rate_per_minute: int, burst: int) -> RateLimiter:
        return RateLimiter(
            rate_per_minute=rate_per_minute, burst=burst, max_keys=settings.rate_limit_max_keys
        )

    app[LIMITER] = limiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app[TENANT_LIMITER] = limiter(
        settings.tenant_rate_limit_per_minute, settings.tenant_rate_limit_burst
    )
    app[LOGIN_POLICY] = LoginPolicy.from_settings(settings)
    app[LOGIN_NAME_LIMITER] = limiter(
        settings.login_rate_limit_per_minute, settings.login_rate_limit_burst
    )
    app[LOGIN_ADDRESS_LIMITER] = limiter(
        settings.login_address_rate_limit_per_minute, settings.login_address_rate_limit_burst
    )
    app.cleanup_ctx.extend(
        [_postgres, _tenant_cache, _outcome_listener, _password_checker, _rabbitmq]
    )
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    if not settings.metrics_port:  # else served on its own port (cli.serve)
        app.router.add_get("/metrics", metrics.metrics_view)
    app.router.add_get("/openapi.json", openapi.openapi_view)
    baasic = _BaasicRoutes(app.router)
    baasic.add("POST", "/{apiKey}/register", register.register)
    baasic.add("GET", "/{apiKey}/register/requests/{requestId}", register.request_status)
    baasic.add("PUT", "/{apiKey}/register/activate/{activationToken}", activation.activate)
    baasic.add("POST", "/{apiKey}/register/resend", register.resend_activation)
    baasic.add("GET", "/{apiKey}/captcha/challenge", health.captcha_challenge)
    baasic.add("POST", "/{apiKey}/login", login.login)
    baasic.add("GET", "/{apiKey}/login", login.current_user)
    baasic.add("PUT", "/{apiKey}/login", login.refresh)
    baasic.add("DELETE", "/{apiKey}/login", login.logout)
    baasic.add("POST", "/{apiKey}/recover-password", account.request_recovery)
    baasic.add("PUT", "/{apiKey}/recover-password", account.reset_password)
    # `users/me` before `users/{userName}/...`: the literal wins for its own path.
    baasic.add("DELETE", "/{apiKey}/users/me", account.delete_me)
    baasic.add("PUT", "/{apiKey}/users/{userName}/change-password", account.change_password)
    for method, path, handler in (*users_admin.ROUTES, *roles_admin.ROUTES):  # back office
        baasic.add(method, path, handler)
    app.router.add_post("/api/v1/organization/users/register", invite.invite_register)
    app.router.add_post("/api/v1/organization/users/invite", invite.invite_with_data)
    app.router.add_get("/api/v1/organization/users", blynk_users.list_users)
    app.router.add_get("/api/v1/organization/search/users", blynk_users.search_users)
    app.router.add_get("/api/v1/organization/user", blynk_users.get_user)
    app.router.add_post("/api/v1/organization/users/create", blynk_users.create_user)
    app.router.add_put("/api/v1/organization/users/role", blynk_users.change_role)
    app.router.add_get("/invitations/{token}", accept.show_form)
    app.router.add_post("/invitations/{token}", accept.accept_form)
    app.router.add_post("/api/v1/invitations/{token}/accept", accept.accept_api)
    webhooks.add_routes(app.router)
    return app
