"""Fixtures for integration tests: real tenants, keys, a confirming publisher."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import asyncpg
import pytest
from aio_pika.abc import AbstractConnection
from argon2 import PasswordHasher, Type

from schemas.events import CloudEvent, RegisterRequested, envelope
from service import amqp, registrations
from service.amqp import Publisher
from service.sealing import derive_secret, seal
from service.settings import Settings
from service.tenants import Tenant, create_tenant
from tests.integration.scripted_smtp import ScriptedMailbox
from workers import registration
from workers.smtp import SmtpConfig, SmtpSender

ACTIVATION_URL = "https://app.example/activate/{activationToken}"
TOKEN_TTL = dt.timedelta(hours=48)


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


@pytest.fixture
def register(pool: asyncpg.Pool, hasher: PasswordHasher, private_key: str, token_key: bytes):
    """register_user wired the way cli/workers.py wires it."""
    return partial(
        registration.register_user,
        pool=pool,
        hasher=hasher,
        private_key=private_key,
        token_key=token_key,
        token_ttl=TOKEN_TTL,
    )


@dataclass(frozen=True)
class Request:
    event: CloudEvent
    data: RegisterRequested
    password: str


@pytest.fixture
def new_request(pool: asyncpg.Pool, settings: Settings):
    """Records a pending request as the gateway does and returns its RegisterRequested."""

    async def make(
        tenant: Tenant,
        *,
        email: str,
        user_name: str,
        password: str | None = None,
        sealed_password: str | None = None,
    ) -> Request:
        password = password or f"pw-{secrets.token_hex(8)}"
        request_id = uuid.uuid4()
        async with pool.acquire() as conn:
            assert await registrations.insert_request(
                conn,
                request_id=request_id,
                tenant_id=tenant.id,
                idempotency_key=None,
                fingerprint=secrets.token_bytes(32),
                email=email,
                user_name=user_name,
                locale="en",
            )
        data = RegisterRequested(
            request_id=request_id,
            tenant_id=tenant.id,
            email=email,
            user_name=user_name,
            locale="en",
            activation_url=ACTIVATION_URL,
            sealed_password=sealed_password or seal(password, settings.seal_public_key),
        )
        return Request(envelope(data, subject=str(request_id)), data, password)

    return make


@pytest.fixture
def scripted() -> ScriptedMailbox:
    box = ScriptedMailbox()
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture
async def sender(scripted: ScriptedMailbox) -> AsyncIterator[SmtpSender]:
    """One reused connection to the scripted server (also the mailer's, in
    test_mail_claims.py)."""
    sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{scripted.port}?timeout=5"))
    yield sender
    await sender.close()
