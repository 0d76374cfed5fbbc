"""Wiring the workers: real pool, broker, SMTP and keys in; consumers out."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from functools import partial

import asyncpg
from argon2 import PasswordHasher, Type

from service import amqp, db, metrics
from service.sealing import derive_secret
from service.settings import Settings
from workers import activation, invitation, mailer, outbox, registration
from workers.runner import Consumer, RetryPolicy
from workers.smtp import SmtpConfig, SmtpPool

log = logging.getLogger(__name__)
WORKERS = ("registration", "invitation", "mailer", "outbox")


def resolve_names(names: list[str]) -> list[str]:
    """Expand `all` and reject unknown workers with a clear message."""
    wanted = list(WORKERS) if "all" in names else list(dict.fromkeys(names))
    for name in wanted:
        if name not in WORKERS:
            raise SystemExit(f"unknown worker {name!r}; choose from {', '.join(WORKERS)} or all")
    return wanted


def password_hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


@dataclass(frozen=True)
class Keys:
    """Worker-only secrets, all derived from the sealing private key."""

    private_key: str
    activation: bytes
    invitation: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        if settings.seal_private_key is None:
            raise SystemExit(
                "REGISTRAR_SEAL_PRIVATE_KEY is not set (see `registrar keys generate`)"
            )
        private_key = settings.seal_private_key.get_secret_value()
        return cls(
            private_key=private_key,
            activation=derive_secret(private_key, "activation-token"),
            invitation=derive_secret(private_key, "invitation-token"),
        )


def registration_handlers(settings: Settings, pool: asyncpg.Pool, keys: Keys) -> dict:
    return {
        "register.requested": partial(
            registration.register_user,
            pool=pool,
            hasher=password_hasher(settings),
            private_key=keys.private_key,
            token_key=keys.activation,
            token_ttl=dt.timedelta(hours=settings.activation_token_ttl_h),
        ),
        "activation.requested": partial(activation.activate_user, pool=pool),
        "activation.resend.requested": partial(
            activation.resend_activation,
            pool=pool,
            token_key=keys.activation,
            ttl=dt.timedelta(hours=settings.activation_token_ttl_h),
        ),
    }


def invitation_handlers(settings: Settings, pool: asyncpg.Pool, keys: Keys) -> dict:
    return {
        "invite.requested": partial(
            invitation.invite_user,
            pool=pool,
            token_key=keys.invitation,
            ttl=dt.timedelta(hours=settings.invitation_ttl_h),
        ),
        "invitation.accept.requested": partial(
            invitation.accept_invitation,
            pool=pool,
            hasher=password_hasher(settings),
            private_key=keys.private_key,
        ),
    }


def mailer_handlers(
    settings: Settings, pool: asyncpg.Pool, keys: Keys, sender: mailer.Sender
) -> dict:
    mail_settings = mailer.MailSettings(
        activation_key=keys.activation,
        invitation_key=keys.invitation,
        mail_from=settings.mail_from,
        public_url=settings.public_url,
        activation_valid_hours=int(settings.activation_token_ttl_h),
    )
    return {
        "email.requested": partial(
            mailer.send_email, pool=pool, sender=sender, settings=mail_settings
        )
    }


async def run_workers(settings: Settings, names: list[str], stop: asyncio.Event) -> None:
    """Run the named workers in this process until `stop` is set, then drain and close."""
    keys = Keys.from_settings(settings)
    names = resolve_names(names)
    if "mailer" in names and not settings.smtp_url:
        raise SystemExit("REGISTRAR_SMTP_URL is not set; the mailer needs an SMTP server")

    pool = await db.create_pool(settings.database_url, max_size=max(4, settings.worker_prefetch))
    connection = await amqp.connect(settings.amqp_url)
    amqp_names = amqp.Names(settings.amqp_prefix)
    publisher = await amqp.publisher_for(connection, settings)
    consume_channel = await connection.channel()
    await consume_channel.set_qos(prefetch_count=settings.worker_prefetch)

    smtp = (
        SmtpPool(SmtpConfig.from_url(settings.smtp_url), size=settings.smtp_pool_size)
        if "mailer" in names
        else None
    )
    handlers = {
        "registration": lambda: registration_handlers(settings, pool, keys),
        "invitation": lambda: invitation_handlers(settings, pool, keys),
        "mailer": lambda: mailer_handlers(settings, pool, keys, smtp),
    }
    dead_letter_hooks = {
        "mailer": {"email.requested": partial(mailer.record_failure, pool=pool)},
    }
    consumers = [
        Consumer(
            consume_channel,
            amqp_names.queue(name),
            handlers[name](),
            retry=RetryPolicy(
                publisher=publisher,
                queues=tuple(amqp_names.retry_queue(name, d) for d in settings.retry_delays_s),
            ),
            on_dead_letter=dead_letter_hooks.get(name),
        )
        for name in names
        if name in handlers
    ]
    tasks = []
    if "outbox" in names:
        relay = outbox.relay(pool, publisher, database_url=settings.database_url, stop=stop)
        tasks.append(asyncio.create_task(relay))
    for consumer in consumers:
        await consumer.start()
    metrics_server = (
        await metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
        if settings.metrics_port
        else None
    )
    log.info("workers running", extra={"workers": names, "metrics_port": settings.metrics_port})
    try:
        await stop.wait()
    finally:
        log.info("workers stopping")
        for consumer in consumers:
            await consumer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        if smtp is not None:
            await smtp.close()
        if metrics_server is not None:
            await metrics_server.cleanup()
        await connection.close()
        await pool.close()
        log.info("workers stopped")
