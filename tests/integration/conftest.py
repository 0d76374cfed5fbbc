"""Fixtures for integration tests: real tenants, keys, a confirming publisher."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aio_pika.abc import AbstractConnection
from argon2 import PasswordHasher, Type

from service import amqp
from service.amqp import Publisher
from service.sealing import derive_secret
from service.settings import Settings
from service.tenants import Tenant, create_tenant

ACTIVATION_URL = "https://app.example/activate/{activationToken}"


@pytest.fixture(scope="session")
def private_key(settings: Settings) -> str:
    assert settings.seal_private_key is not None
    return settings.seal_private_key.get_secret_value()


@pytest.fixture(scope="session")
def token_key(private_key: str) -> bytes:
    """The workers' activation-token secret, derived as cli/workers.py does."""
    return derive_secret(private_key, "activation-token")


@pytest.fixture(scope="session")
def hasher() -> PasswordHasher:
    """argon2id with cheap parameters: the algorithm is what matters here, not the cost."""
    return PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)


MakeTenant = Callable[..., Awaitable[Tenant]]


@pytest.fixture
def make_tenant(pool: asyncpg.Pool) -> MakeTenant:
    """Creates a fresh tenant (with its default `User` role) per call."""

    async def make(**options: object) -> Tenant:
        options.setdefault("activation_url_prefixes", ["https://app.example/"])
        tenant, _api_key = await create_tenant(
            pool, name=f"tenant-{uuid.uuid4().hex[:8]}", **options
        )
        return tenant

    return make


@pytest.fixture(scope="session")
async def publisher(settings: Settings, amqp_connection: AbstractConnection) -> Publisher:
    """A confirm-mode publisher on the run's topology (declared by open_publisher)."""
    return await amqp.open_publisher(
        amqp_connection,
        amqp.Names(settings.amqp_prefix),
        max_length=settings.queue_max_length,
        timeout=settings.confirm_timeout_s,
    )
