"""Typed application keys: every resource the gateway's handlers may use."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from service.amqp import Publisher
from service.outcomes import OutcomeWaiter
from service.ratelimit import RateLimiter
from service.settings import Settings
from service.supervisor import Supervisor

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
PUBLISHER = web.AppKey("publisher", Publisher)
WAITER = web.AppKey("waiter", OutcomeWaiter)
LIMITER = web.AppKey("limiter", RateLimiter)  # per client address
TENANT_LIMITER = web.AppKey("tenant_limiter", RateLimiter)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
