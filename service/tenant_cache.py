"""Tenants and access tokens by key hash, cached in the gateway with invalidation.

Every request names its tenant by API key (or bearer token), and reading the tenant row
was one database round trip per request. Keys change rarely; when they do, a trigger
announces it on CHANNEL (migration 0009) and every gateway forgets all it cached. The
cache is trusted only while that announcement can arrive: while the LISTEN connection is
down, every lookup goes to the database, and the cache starts empty when it reconnects
(service.listen calls `invalidate` then). So a rotated or revoked key stops working as
soon as its UPDATE commits, as it did without a cache.

Unknown keys are not cached, so a client guessing keys cannot fill the memory (and the
rate limits apply before a lookup).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from service import tenants, tokens
from service.tenants import AccessToken, Tenant

CHANNEL = "registrar_tenants"
MAX_ENTRIES = 10_000
V = TypeVar("V")


class TenantCache:
    def __init__(self, pool: asyncpg.Pool, *, trusted: Callable[[], bool]) -> None:
        """`trusted()` says whether invalidations can arrive (the listener is connected)."""
        self._pool = pool
        self._trusted = trusted
        self._tenants: dict[bytes, Tenant] = {}
        self._tokens: dict[bytes, AccessToken] = {}
        # Bumped by every invalidation: a lookup that raced with one does not store.
        self._generation = 0
        self.hits = 0

    def invalidate(self, _payload: str = "") -> None:
        self._generation += 1
        self._tenants.clear()
        self._tokens.clear()

    async def tenant(self, api_key: str) -> Tenant | None:
        """The tenant whose unrevoked API key this is, or None."""
        return await self._lookup(self._tenants, api_key, tenants.find_by_api_key)

    async def access_token(self, token: str) -> AccessToken | None:
        """The unrevoked bearer token with its tenant, or None."""
        return await self._lookup(self._tokens, token, tenants.find_access_token)

    async def _lookup(
        self,
        cache: dict[bytes, V],
        secret: str,
        load: Callable[[asyncpg.Pool, str], Awaitable[V | None]],
    ) -> V | None:
        if not self._trusted():
            self.invalidate()
            return await load(self._pool, secret)
        digest = tokens.hash_secret(secret)
        value = cache.get(digest)
        if value is not None:
            self.hits += 1
            return value
        generation = self._generation
        value = await load(self._pool, secret)
        if value is not None and generation == self._generation and self._trusted():
            if len(cache) >= MAX_ENTRIES:
                cache.clear()
            cache[digest] = value
        return value
