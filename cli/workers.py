"""Wiring the workers: real pool, broker, SMTP and keys in; consumers out."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from functools import partial

import asyncpg

from service import amqp, metrics, prune, startup
from service import webhooks as webhook_endpoints
from service.listen import Listener
from service.passwords import HashPool, password_hasher
from service.sealing import derive_secret, private_keys
from service.settings import Settings
from service.supervisor import Supervisor
from workers import accounts, activation, invitation, mailer, outbox, registration, webhooks
from workers.runner import Consumer, RetryPolicy
from workers.smtp import SmtpConfig, SmtpPool

log = logging.getLogger(__name__)
WORKERS = ("registration", "invitation", "mailer", "outbox", "webhooks")


def resolve_names(names: list[str]) -> list[str]:
    """Expand `all` and reject unknown workers with a clear message."""
    wanted = list(WORKERS) if "all" in names else list(dict.fromkeys(names))
    for name in wanted:
        if name not in WORKERS:
            raise SystemExit(f"unknown worker {name!r}; choose from {', '.join(WORKERS)} or all")
    return wanted


@dataclass(frozen=True)
class Keys:
    """Worker-only secrets, all derived from the sealing private key(s): `private_key` is
    REGISTRAR_SEAL_PRIVATE_KEY as given (several keys, comma-separated, newest first)."""

    private_key: str
    activation: bytes
    invitation: bytes
    recovery: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        if settings.seal_private_key is None:
            raise SystemExit(
                "REGISTRAR_SEAL_PRIVATE_KEY is not set (see `registrar keys generate`)"
            )
        private_key = settings.seal_private_key.get_secret_value()
        try:
            private_keys(private_key)
        except ValueError as exc:
            raise SystemExit(f"REGISTRAR_SEAL_PRIVATE_KEY: {exc}") from None
        return cls(
            private_key=private_key,
            activation=derive_secret(private_key, "activation-token"),
            invitation=derive_secret(private_key, "invitation-token"),
            recovery=derive_secret(private_key, "recovery-token"),
        )


def registration_handlers(
    settings: Settings, pool: asyncpg.Pool, keys: Keys, hashes: HashPool
) -> dict:
    return {
        "register.requested": partial(
            registration.register_user,
            pool=pool,
            hasher=hashes,
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
            interval=dt.timedelta(seconds=settings.resend_interval_s),
        ),
        "password.recovery.requested": partial(
            accounts.send_recovery_link,
            pool=pool,
            token_key=keys.recovery,
            ttl=dt.timedelta(seconds=settings.recovery_ttl_s),
            interval=dt.timedelta(seconds=settings.resend_interval_s),
        ),
        "password.reset.requested": partial(
            accounts.reset_password, pool=pool, hasher=hashes, private_key=keys.private_key
        ),
        "password.change.requested": partial(
            accounts.change_password, pool=pool, hasher=hashes, private_key=keys.private_key
        ),
        "account.delete.requested": partial(accounts.delete_account, pool=pool),
    }


def invitation_handlers(
    settings: Settings, pool: asyncpg.Pool, keys: Keys, hashes: HashPool
) -> dict:
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
            hasher=hashes,
            private_key=keys.private_key,
        ),
    }


def mailer_handlers(
    settings: Settings, pool: asyncpg.Pool, keys: Keys, sender: mailer.Sender
) -> dict:
    mail_settings = mailer.MailSettings(
        activation_key=keys.activation,
        invitation_key=keys.invitation,
        recovery_key=keys.recovery,
        mail_from=settings.mail_from,
        public_url=settings.public_url,
        activation_valid_hours=int(settings.activation_token_ttl_h),
        recovery_valid_minutes=max(1, int(settings.recovery_ttl_s // 60)),
        lease_s=settings.email_lease_s,
    )
    return {
        "email.requested": partial(
            mailer.send_email, pool=pool, sender=sender, settings=mail_settings
        )
    }


async def run_workers(
    settings: Settings,
    names: list[str],
    stop: asyncio.Event,
    supervisor: Supervisor | None = None,
) -> None:
    """Run the named workers in this process until `stop` is set, then drain and close.

    Every resource is entered once on one AsyncExitStack and closed in reverse order,
    also when start-up fails half-way. Long-running tasks (the outbox relay and its
    LISTEN connection) are supervised; consumers are reported on /readyz. When a task
    crashes, the process stops and exits non-zero (SystemExit from `raise_if_failed`).
    """
    keys = Keys.from_settings(settings)
    names = resolve_names(names)
    if "mailer" in names and not settings.smtp_url:
        raise SystemExit("REGISTRAR_SMTP_URL is not set; the mailer needs an SMTP server")
    supervisor = supervisor or Supervisor(stop, backoff_max=settings.restart_backoff_max_s)
    async with contextlib.AsyncExitStack() as stack:
        pool = await startup.open_pool(settings, max_size=max(4, settings.worker_prefetch))
        stack.push_async_callback(pool.close)
        connection = await startup.open_amqp(settings)
        stack.push_async_callback(connection.close)
        publisher = await amqp.publisher_for(connection, settings)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=settings.worker_prefetch)
        smtp = None
        if "mailer" in names:
            smtp = SmtpPool(SmtpConfig.from_url(settings.smtp_url), size=settings.smtp_pool_size)
            stack.push_async_callback(smtp.close)

        hashes = HashPool(
            password_hasher(settings), threads=settings.hash_threads, nice=settings.hash_nice
        )
        stack.callback(hashes.close)  # after the consumers have drained (LIFO)
        for consumer in consumers_for(
            settings, names, consume_channel, publisher, pool, keys, smtp, hashes
        ):
            await consumer.start()
            stack.push_async_callback(consumer.stop)  # drains in-flight handlers
            supervisor.health.probe(f"consumer:{consumer.queue_name}", consumer.status)
        if "outbox" in names:
            start_relay(settings, supervisor, pool, publisher, stop)
        if "webhooks" in names:
            await start_webhooks(settings, supervisor, pool, keys, stop, stack)
        stack.push_async_callback(supervisor.close)  # runs first: tasks end before pools
        if settings.metrics_port:
            metrics_server = await metrics.serve_metrics(
                settings.metrics_host, settings.metrics_port, readiness=supervisor.health.report
            )
            stack.push_async_callback(metrics_server.cleanup)
        log.info("workers running", extra={"workers": names, "metrics_port": settings.metrics_port})
        await stop.wait()
        log.info("workers stopping")
    log.info("workers stopped")
    supervisor.raise_if_failed()


def consumers_for(
    settings: Settings,
    names: list[str],
    channel,
    publisher: amqp.Publisher,
    pool: asyncpg.Pool,
    keys: Keys,
    smtp: SmtpPool | None,
    hashes: HashPool,
) -> list[Consumer]:
    """One consumer per worker queue named, with its handlers and retry queues."""
    amqp_names = amqp.Names(settings.amqp_prefix)
    handlers = {
        "registration": lambda: registration_handlers(settings, pool, keys, hashes),
        "invitation": lambda: invitation_handlers(settings, pool, keys, hashes),
        "mailer": lambda: mailer_handlers(settings, pool, keys, smtp),
    }
    dead_letter_hooks = {
        "registration": {"register.requested": partial(registration.record_failure, pool=pool)},
        "mailer": {"email.requested": partial(mailer.record_failure, pool=pool)},
    }
    return [
        Consumer(
            channel,
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


def start_relay(
    settings: Settings,
    supervisor: Supervisor,
    pool: asyncpg.Pool,
    publisher: amqp.Publisher,
    stop: asyncio.Event,
) -> None:
    """The outbox relay and the LISTEN connection that wakes it, and the periodic prune
    (service.prune), all supervised."""
    wake = asyncio.Event()
    start_listener(settings, supervisor, "outbox-listener", outbox.CHANNEL, wake)
    supervisor.start(
        "outbox-relay",
        partial(
            outbox.relay,
            pool,
            publisher,
            wake=wake,
            stop=stop,
            max_attempts=settings.outbox_max_attempts,
        ),
    )
    supervisor.start(
        "outbox-prune",
        partial(
            outbox.prune_periodically,
            pool,
            prune.Retention.from_settings(settings),
            stop=stop,
            interval_s=settings.prune_interval_s,
            batch=settings.prune_batch,
        ),
    )


def start_listener(
    settings: Settings, supervisor: Supervisor, name: str, channel: str, wake: asyncio.Event
) -> None:
    """A supervised LISTEN connection that sets `wake` on each NOTIFY, in /readyz."""
    listener = Listener(
        settings.database_session_url,
        channel,
        lambda _payload: wake.set(),
        connect_timeout=settings.db_connect_timeout_s,
    )
    supervisor.start(name, listener.run, grace_s=0)
    supervisor.health.probe(name, listener.status)


async def start_webhooks(
    settings: Settings,
    supervisor: Supervisor,
    pool: asyncpg.Pool,
    keys: Keys,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    """The webhook dispatcher (workers/webhooks.py) and the LISTEN that wakes it, both
    supervised; its HTTP client closes after the dispatcher has drained (exit stack)."""
    config = webhooks.DeliverySettings.from_settings(settings)
    await webhooks.register_event_types(pool)
    session = webhooks.open_session(config)
    stack.push_async_callback(session.close)
    dispatcher = webhooks.Dispatcher(pool, session, config, private_key=keys.private_key)
    stack.push_async_callback(dispatcher.close)
    start_listener(
        settings, supervisor, "webhook-listener", webhook_endpoints.CHANNEL, dispatcher.wake
    )
    supervisor.start(
        "webhook-dispatcher", partial(dispatcher.run, stop), grace_s=config.drain_s + 1
    )
    supervisor.health.probe("webhook-client", dispatcher.status)
