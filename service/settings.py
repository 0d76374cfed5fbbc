"""Configuration from REGISTRAR_* environment variables, read once per process."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.ratelimit import IPNetwork, parse_networks


class Settings(BaseSettings):
    """Every knob of registrar. Built once by the composition root and passed down."""

    model_config = SettingsConfigDict(env_prefix="REGISTRAR_", frozen=True, extra="ignore")

    # URLs may carry passwords: keep them out of reprs (and so out of logs and tracebacks).
    database_url: str = Field(default="postgresql://127.0.0.1:5432/registrar", repr=False)
    # Behind a transaction-pooling PgBouncer (docs/pgbouncer.md) database_url names the
    # pooler and this one PostgreSQL itself, for the connections that keep session state
    # (LISTEN, the migration lock). Setting it also tells the pool that database_url is a
    # pooler: no named prepared statements, no startup parameters. Unset: no pooler.
    database_direct_url: str | None = Field(default=None, repr=False)

    @property
    def database_behind_pooler(self) -> bool:
        return self.database_direct_url is not None

    @property
    def database_session_url(self) -> str:
        """Where LISTEN, migrations and `registrar prune` connect: PostgreSQL itself, never a
        pooler."""
        return self.database_direct_url or self.database_url

    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", repr=False)
    amqp_prefix: str = "registrar"
    # Declare the AMQP topology at start-up (needs configure permission), or only check
    # that it exists (the gateway's least-privilege broker user; see service/amqp.py).
    amqp_declare: bool = True
    smtp_url: str | None = Field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8080"
    seal_public_key: str | None = None
    seal_private_key: SecretStr | None = None

    register_wait_s: float = Field(default=10.0, ge=0, le=120)
    max_body_bytes: int = 64 * 1024
    # Token buckets, per gateway process: one per client address, one per tenant (a
    # request must pass both): sustained rate and burst size of each.
    rate_limit_per_minute: int = Field(default=600, ge=1)
    rate_limit_burst: int = Field(default=60, ge=1)
    tenant_rate_limit_per_minute: int = Field(default=6000, ge=1)
    tenant_rate_limit_burst: int = Field(default=600, ge=1)
    # At most this many buckets per limiter; the least recently used goes first.
    rate_limit_max_keys: int = Field(default=100_000, ge=1)
    # Proxies (comma-separated CIDRs) whose X-Forwarded-For names the client address.
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    # `Prefer: wait` / default POSTs waiting for an outcome at once; beyond it: 202 at once.
    max_waiters: int = Field(default=1000, ge=0)
    # Backpressure: a queue holding this many messages refuses new ones (-> 503).
    queue_max_length: int = Field(default=100_000, ge=1)
    confirm_timeout_s: float = 5.0
    # PostgreSQL: give up connecting, and cancel any statement, after these many seconds,
    # so an outage turns into a quick 503 / retry instead of a hung request or worker.
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    db_statement_timeout_s: float = Field(default=15.0, gt=0)
    # A command the gateway recorded but the broker never confirmed is published by the
    # outbox relay once it is this old (the gateway normally publishes it itself at once).
    command_grace_s: float = Field(default=30.0, ge=0)
    # The relay tries a row this many times before parking it (metric, log, `outbox` table).
    outbox_max_attempts: int = Field(default=5, ge=1)
    # How long a mailer's claim on an email lasts; after that another copy may take it over.
    email_lease_s: float = Field(default=120.0, gt=0)
    # The event loop of the long-running processes: uvloop (libuv) spends markedly less CPU
    # per socket operation than asyncio's default loop (bench/RESULTS.md).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Supervised tasks that hit a transient error restart after a capped, jittered backoff.
    restart_backoff_max_s: float = Field(default=30.0, gt=0)

    # At most one resend mail per address and kind of mail in this many seconds.
    resend_interval_s: float = Field(default=60.0, ge=0)
    activation_token_ttl_h: float = 48.0
    invitation_ttl_h: float = 7 * 24.0
    captcha_max_number: int = Field(default=50_000, ge=1000)
    # argon2id, OWASP defaults: m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    # Threads that hash passwords in a worker process (default: the number of cores), and
    # their niceness (0-19): hashing yields the CPU to a gateway sharing the machine, and
    # costs nothing where the workers have it to themselves.
    hash_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    hash_nice: int = Field(default=10, ge=0, le=19)

    # Login (SPEC §10): access tokens live this long (a sliding one, this long after its
    # last use); this many failed logins within 15 minutes lock the account this long.
    token_ttl_s: int = Field(default=7200, ge=60)
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)
    lockout_s: int = Field(default=900, ge=1)
    # Per gateway process: login attempts (and recovery requests) per user name, and per
    # client address, on top of the general limits.
    login_rate_limit_per_minute: int = Field(default=30, ge=1)
    login_rate_limit_burst: int = Field(default=10, ge=1)
    login_address_rate_limit_per_minute: int = Field(default=120, ge=1)
    login_address_rate_limit_burst: int = Field(default=30, ge=1)
    # Password checks (login, old password, delete) in the gateway: at most this many
    # argon2 verifications at once, on their own threads, and at most `_queue` waiting for
    # one; beyond that a request gets 503 at once instead of piling up behind a storm.
    password_check_threads: int = Field(default=1, ge=1, le=64)
    password_check_queue: int = Field(default=64, ge=0)
    password_check_nice: int = Field(default=10, ge=0, le=19)
    recovery_ttl_s: int = Field(default=3600, ge=60)

    # Webhooks (SPEC §11, service/webhooks.py, workers/webhooks.py). Private destinations
    # (loopback, RFC 1918, link-local, ...) and plain http only for development and tests.
    webhook_allow_private: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)  # a 2xx within it delivers
    webhook_retry_for_s: float = Field(default=86_400.0, ge=0)  # then a delivery is parked
    webhook_retry_base_s: float = Field(default=5.0, gt=0)  # first retry delay, doubling...
    webhook_retry_max_delay_s: float = Field(default=3_600.0, gt=0)  # ...up to this, jittered
    webhook_lease_s: float = Field(default=60.0, gt=0)  # a claim; must outlast an attempt
    webhook_concurrency: int = Field(default=64, ge=1, le=1000)  # requests at once, per process
    webhook_endpoint_concurrency: int = Field(default=4, ge=1, le=100)  # per endpoint, in all
    webhook_max_per_tenant: int = Field(default=50, ge=1)

    # Pruning (docs/pruning.md): `registrar prune`, and the outbox worker every
    # `prune_interval_s`, delete rows past their retention, `prune_batch` rows per short
    # transaction. Records that make a repeat harmless must outlive every way a repeat can
    # come: a message's retry ladder (retry_delays_s, ~13 min), the relay's grace and
    # backoff (minutes), a client retrying a POST with its Idempotency-Key or polling its
    # request's status (hours to days), an operator replaying a dead-letter queue after a
    # long weekend (days). Hence days, not minutes; and a floor of an hour each.
    # Published outbox rows (nothing reads them once out; kept for looking back) and
    # delivered webhook deliveries (webhook retries end after webhook_retry_for_s, 24 h).
    retention_outbox_s: float = Field(default=2 * 86_400.0, ge=3_600)
    # The message ids each worker applied (its deduplication).
    retention_processed_s: float = Field(default=7 * 86_400.0, ge=3_600)
    # Decided registration requests (Idempotency-Key replays, the status resource),
    # invitation Idempotency-Keys, unclaimed account-change authorizations, sent emails.
    retention_requests_s: float = Field(default=7 * 86_400.0, ge=3_600)
    # Tokens, invitations and login sessions, counted from their expiry (until then a used
    # token answers 409 "already used", afterwards 404 like any unknown one).
    retention_tokens_s: float = Field(default=7 * 86_400.0, ge=0)
    # What an operator may still act on: parked webhook deliveries (`webhook replay`),
    # failed emails and undecided registration requests (`dlq replay`). Parked outbox rows
    # are never pruned.
    retention_parked_s: float = Field(default=30 * 86_400.0, ge=86_400)
    prune_interval_s: float = Field(default=3_600.0, gt=0)
    prune_batch: int = Field(default=1_000, ge=1, le=100_000)

    mail_from: str = "registrar <no-reply@registrar.local>"
    worker_prefetch: int = Field(default=16, ge=1)
    # Pauses before each retry of a failed message (then it is dead-lettered).
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    smtp_pool_size: int = Field(default=3, ge=1, le=50)
    # Workers serve /metrics and /healthz here when set (the gateway on its own port).
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other hosts by design
    log_level: str = "INFO"

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str | list | tuple):
            return parse_networks(value)
        return value

    @model_validator(mode="after")
    def _dedupe_outlives_retries(self) -> Settings:
        """A message may come back until its last retry (and the relay's copy after the
        grace period): its processed record must still be there then."""
        ladder = sum(self.retry_delays_s) + self.command_grace_s
        if self.retention_processed_s < 2 * ladder:
            raise ValueError(
                f"REGISTRAR_RETENTION_PROCESSED_S must be at least twice the retry ladder "
                f"(retry_delays_s + command_grace_s = {ladder:g} s)"
            )
        return self

    # `registrar run` only: where keys and the development mailbox live.
    var_dir: str = "var"
    dev_smtp_port: int = 8025
