"""Typed application keys: every resource the gateway's handlers may use."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from service.amqp import Publisher
from service.intake import Intake
from service.logins import LoginPolicy
from service.outcomes import OutcomeWaiter
from service.passwords import PasswordChecker
from service.ratelimit import RateLimiter
from service.settings import Settings
from service.supervisor import Supervisor
from service.tenant_cache import TenantCache

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
TENANTS = web.AppKey("tenants", TenantCache)  # tenant and token lookups, cached
INTAKE = web.AppKey("intake", Intake)  # batches registration records (service.intake)
PUBLISHER = web.AppKey("publisher", Publisher)
WAITER = web.AppKey("waiter", OutcomeWaiter)
LIMITER = web.AppKey("limiter", RateLimiter)  # per client address
TENANT_LIMITER = web.AppKey("tenant_limiter", RateLimiter)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
CHECKER = web.AppKey("checker", PasswordChecker)  # argon2 verifications, bounded
LOGIN_POLICY = web.AppKey("login_policy", LoginPolicy)
LOGIN_NAME_LIMITER = web.AppKey("login_name_limiter", RateLimiter)  # per tenant + login name
LOGIN_ADDRESS_LIMITER = web.AppKey("login_address_limiter", RateLimiter)
