"""Wiring the workers: real pool, broker, SMTP and keys in; consumers out."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from functools import partial

from argon2 import PasswordHasher, Type

from service import amqp, db
from service.sealing import derive_secret
from service.settings import Settings
from workers import mailer, outbox, registration
from workers.runner import Consumer
from workers.smtp import SmtpConfig, SmtpSender

log = logging.getLogger(__name__)
WORKERS = ("registration", "invitation", "mailer", "outbox")
IMPLEMENTED = ("registration", "mailer", "outbox")


def resolve_names(names: list[str]) -> list[str]:
    """Expand `all` and reject unknown or not-yet-built workers with a clear message."""
    wanted = list(IMPLEMENTED) if "all" in names else list(dict.fromkeys(names))
    for name in wanted:
        if name not in WORKERS:
            raise SystemExit(f"unknown worker {name!r}; choose from {', '.join(WORKERS)} or all")
        if name not in IMPLEMENTED:
            raise SystemExit(f"the {name} worker is not available in this version yet")
    return wanted


def password_hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


async def run_workers(settings: Settings, names: list[str], stop: asyncio.Event) -> None:
    """Run the named workers in this process until `stop` is set, then drain and close."""
    if settings.seal_private_key is None:
        raise SystemExit("REGISTRAR_SEAL_PRIVATE_KEY is not set (see `registrar keys generate`)")
    private_key = settings.seal_private_key.get_secret_value()
    token_key = derive_secret(private_key, "activation-token")
    names = resolve_names(names)

    pool = await db.create_pool(settings.database_url, max_size=max(4, settings.worker_prefetch))
    connection = await amqp.connect(settings.amqp_url)
    amqp_names = amqp.Names(settings.amqp_prefix)
    publisher = await amqp.open_publisher(
        connection,
        amqp_names,
        max_length=settings.queue_max_length,
        timeout=settings.confirm_timeout_s,
    )
    consume_channel = await connection.channel()
    await consume_channel.set_qos(prefetch_count=settings.worker_prefetch)

    consumers: list[Consumer] = []
    tasks: list[asyncio.Task[None]] = []
    smtp: SmtpSender | None = None
    if "registration" in names:
        consumers.append(
            Consumer(
                consume_channel,
                amqp_names.queue("registration"),
                {
                    "register.requested": partial(
                        registration.register_user,
                        pool=pool,
                        hasher=password_hasher(settings),
                        private_key=private_key,
                        token_key=token_key,
                        token_ttl=dt.timedelta(hours=settings.activation_token_ttl_h),
                    ),
                    "activation.requested": partial(registration.activate_user, pool=pool),
                },
            )
        )
    if "mailer" in names:
        if not settings.smtp_url:
            raise SystemExit("REGISTRAR_SMTP_URL is not set; the mailer needs an SMTP server")
        smtp = SmtpSender(SmtpConfig.from_url(settings.smtp_url))
        consumers.append(
            Consumer(
                consume_channel,
                amqp_names.queue("mailer"),
                {
                    "email.requested": partial(
                        mailer.send_email,
                        pool=pool,
                        sender=smtp,
                        token_key=token_key,
                        mail_from=settings.mail_from,
                        valid_hours=int(settings.activation_token_ttl_h),
                    ),
                },
            )
        )
    if "outbox" in names:
        tasks.append(
            asyncio.create_task(
                outbox.relay(pool, publisher, database_url=settings.database_url, stop=stop)
            )
        )
    for consumer in consumers:
        await consumer.start()
    log.info("workers running", extra={"workers": names})
    try:
        await stop.wait()
    finally:
        log.info("workers stopping")
        for consumer in consumers:
            await consumer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        if smtp is not None:
            await smtp.close()
        await connection.close()
        await pool.close()
        log.info("workers stopped")
