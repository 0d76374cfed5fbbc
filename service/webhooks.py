"""Webhook endpoints (SPEC §11): registering, listing, removing and replaying them, and
the Standard Webhooks signature every delivery carries.

An endpoint belongs to one tenant and receives that tenant's public events (all, or
those its filter names) as CloudEvent JSON, POSTed by the webhooks worker
(workers/webhooks.py). Its signing secret (`whsec_` + base64 of 32 random bytes) is
shown once, when the endpoint is created, and stored only sealed to
REGISTRAR_SEAL_PUBLIC_KEY: the gateway and the CLI can seal it, only the workers (which
hold the private key) can open it to sign.

Deliveries are rows of `webhook_deliveries`, written by a trigger on `outbox` in the
transaction that records each event (migration 0016).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from schemas.events import EVENTS, PUBLIC_EVENTS
from schemas.ids import uuid7
from service import ssrf
from service.sealing import seal

SECRET_PREFIX = "whsec_"  # noqa: S105 - the public prefix of every secret
SECRET_BYTES = 32
CHANNEL = "registrar_webhooks"  # NOTIFYed by the fan-out trigger when deliveries are due

_ROUTING_KEY_BY_TYPE = {event_type: key for key, (event_type, _model) in EVENTS.items()}


class WebhookError(ValueError):
    """A webhook request that cannot be honoured (bad URL, unknown event, limit reached);
    the message says why and is safe to show the caller."""


class TooManyEndpoints(WebhookError):
    pass


# --- signing (https://www.standardwebhooks.com) -----------------------------------------


def new_secret() -> str:
    """A new signing secret in the Standard Webhooks form: `whsec_` + base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_…` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    key: bytes, message_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt (its own timestamp: receivers
    refuse timestamps more than five minutes away from their clock)."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }


# --- event filters ----------------------------------------------------------------------


def event_filter(values: list[str] | None) -> tuple[str, ...] | None:
    """The routing keys an endpoint subscribes to, from routing keys (`user.registered`)
    or CloudEvents types (`registrar.user.registered.v1`); None (no filter) for every
    public event. WebhookError for a command or an unknown name."""
    if not values:
        return None
    keys = []
    for value in values:
        key = _ROUTING_KEY_BY_TYPE.get(value, value)
        if key not in PUBLIC_EVENTS:
            raise WebhookError(
                f"{value!r} is not a public event; choose from {', '.join(sorted(PUBLIC_EVENTS))}"
            )
        if key not in keys:
            keys.append(key)
    return tuple(keys)


# --- endpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """What may be shown about an endpoint: never its secret."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    url: str
    events: tuple[str, ...] | None
    created_at: dt.datetime
    disabled_at: dt.datetime | None = None
    disabled_reason: str | None = None
    pending: int = 0
    parked: int = 0
    failures: int = 0
    last_error: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Endpoint:
        return cls(
            id=row["id"],
            tenant_id=row["tenant_id"],
            url=row["url"],
            events=None if row["event_types"] is None else tuple(row["event_types"]),
            created_at=row["created_at"],
            disabled_at=row["disabled_at"],
            disabled_reason=row["disabled_reason"],
            pending=row.get("pending", 0),
            parked=row.get("parked", 0),
            failures=row["failures"],
            last_error=row["last_error"],
        )

    def to_json(self) -> dict[str, Any]:
        """The camelCase representation of the CLI and the HTTP API."""
        return {
            "id": str(self.id),
            "tenantId": str(self.tenant_id),
            "url": self.url,
            "events": None if self.events is None else list(self.events),
            "createdAt": self.created_at.isoformat(),
            "disabledAt": self.disabled_at.isoformat() if self.disabled_at else None,
            "disabledReason": self.disabled_reason,
            "pending": self.pending,
            "parked": self.parked,
            "failing": self.failures > 0,
            "lastError": self.last_error,
        }


async def create_endpoint(
    pool: asyncpg.Pool,
    *,
    tenant_id: uuid.UUID,
    url: str,
    events: list[str] | None,
    public_key: str,
    allow_private: bool,
    max_per_tenant: int,
) -> tuple[Endpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown this once).

    WebhookError when the URL is not an allowed destination (service.ssrf), an event is
    not public, or the tenant has `max_per_tenant` endpoints already; LookupError when
    there is no such tenant."""
    filtered = event_filter(events)
    try:
        await ssrf.check_url(url, allow_private=allow_private)
    except ssrf.DestinationRefused as exc:
        raise WebhookError(f"url: {exc}") from None
    secret = new_secret()
    try:
        row = await pool.fetchrow(
            """
            INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, sealed_secret)
            SELECT $1, $2, $3, $4, $5
             WHERE (SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $2) < $6
            RETURNING *
            """,
            uuid7(),
            tenant_id,
            url,
            None if filtered is None else list(filtered),
            seal(secret, public_key),
            max_per_tenant,
        )
    except asyncpg.ForeignKeyViolationError:
        raise LookupError(f"no tenant with id {tenant_id}") from None
    if row is None:
        raise TooManyEndpoints(f"a tenant may have at most {max_per_tenant} webhook endpoints")
    return Endpoint.from_row(row), secret


LIST = """
SELECT e.*,
       (SELECT count(*) FROM webhook_deliveries d
         WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_deliveries d
         WHERE d.endpoint_id = e.id AND d.status = 'parked') AS parked
  FROM webhook_endpoints e
"""


async def list_endpoints(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[Endpoint]:
    """The tenant's endpoints, oldest first, with their pending and parked deliveries."""
    rows = await pool.fetch(LIST + " WHERE e.tenant_id = $1 ORDER BY e.created_at, e.id", tenant_id)
    return [Endpoint.from_row(row) for row in rows]


async def get_endpoint(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> Endpoint | None:
    """One endpoint (of `tenant_id`, when given), or None."""
    row = await pool.fetchrow(
        LIST + " WHERE e.id = $1 AND ($2::uuid IS NULL OR e.tenant_id = $2)",
        endpoint_id,
        tenant_id,
    )
    return None if row is None else Endpoint.from_row(row)


async def remove_endpoint(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> bool:
    """Remove an endpoint (of `tenant_id`, when given) with its deliveries, delivered or
    not; False when there is no such endpoint. A delivery in flight may still arrive."""
    removed = await pool.fetchval(
        "DELETE FROM webhook_endpoints WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) "
        "RETURNING true",
        endpoint_id,
        tenant_id,
    )
    return bool(removed)


# Parked deliveries back to pending, and pending ones not in flight due now, all with a
# fresh retry window; the endpoint enabled and its failure streak forgotten. The lease
# condition is in the UPDATE itself, so a delivery a dispatcher claims meanwhile is left
# to it (re-checked against the row's new version).
REPLAY = """
WITH endpoint AS (
    UPDATE webhook_endpoints
       SET disabled_at = NULL, disabled_reason = NULL, failures = 0, retry_at = NULL
     WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)
    RETURNING id
), old AS (
    SELECT d.id, d.status = 'parked' AS was_parked
      FROM webhook_deliveries d
      JOIN endpoint ON endpoint.id = d.endpoint_id
     WHERE d.status IN ('parked', 'pending')
), replayed AS (
    UPDATE webhook_deliveries d
       SET status = 'pending', parked_at = NULL, attempts = 0, retry_from = now(),
           next_attempt_at = now(), lease_until = NULL, lease_id = NULL
      FROM old
     WHERE d.id = old.id
       AND (d.status = 'parked'
            OR (d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until < now())))
    RETURNING old.was_parked
)
SELECT (SELECT count(*) FROM endpoint) AS found,
       (SELECT count(*) FROM replayed WHERE was_parked) AS replayed
"""


async def replay(
    pool: asyncpg.Pool, endpoint_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> int | None:
    """Queue an endpoint's parked deliveries again and make its pending ones due now, all
    with a fresh retry window, and enable the endpoint if a 410 disabled it; how many
    were parked, or None when there is no such endpoint."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(REPLAY, endpoint_id, tenant_id)
        if not row["found"]:
            return None
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return int(row["replayed"])
