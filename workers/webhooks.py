"""The webhooks worker: POSTs each tenant's public events to its endpoints, signed per
Standard Webhooks (SPEC §11).

What to deliver comes from our own table, `webhook_deliveries`, filled by a trigger in the
transaction that records each event in the outbox (migration 0016) — never from the
public exchange, where anything published must not make a worker act (SPEC §5).

One dispatcher per process claims due deliveries and starts one task per POST:

* **Claims.** A delivery is claimed (attempts + 1, a lease) in a committed transaction
  before its POST, with FOR UPDATE SKIP LOCKED: two processes never hold one delivery.
  A claim whose holder died expires with its lease and is taken over (counted: the
  receiver may then see a `webhook-id` twice, which Standard Webhooks receivers drop).
* **Isolation.** Endpoints are served round robin (the least recently served first),
  each with at most REGISTRAR_WEBHOOK_ENDPOINT_CONCURRENCY deliveries in flight across
  all processes (counted from live leases, under a lock on the endpoint row), and the
  process with at most REGISTRAR_WEBHOOK_CONCURRENCY in all. An endpoint that fails is
  tried one delivery at a time after a growing pause, until one succeeds; then its
  waiting deliveries are due at once. A slow or dead receiver holds a few slots at
  most, never the others' (no head-of-line blocking).
* **Outcome.** A 2xx within REGISTRAR_WEBHOOK_TIMEOUT_S delivers. 410 parks the
  delivery and disables the endpoint. Anything else (another status, a redirect — never
  followed —, a timeout, a refused connection, a destination that resolves to a
  forbidden address) is retried after a growing, jittered delay until
  REGISTRAR_WEBHOOK_RETRY_FOR_S have passed since the delivery was queued; then it is
  parked (`registrar webhook replay` queues it again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass

import aiohttp
import asyncpg

from schemas.events import CONTENT_TYPE, PUBLIC_EVENTS
from service import metrics, ssrf
from service.sealing import UnsealError, unseal
from service.settings import Settings
from service.supervisor import backoff_delay, retry_transient
from service.webhooks import CHANNEL, secret_key, signed_headers
from workers.outbox import wait_for_either

log = logging.getLogger(__name__)

USER_AGENT = "registrar-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024  # read (and dropped) so the connection can be reused
ERROR_CHARS = 500
IDLE_POLL_S = 5.0
# On SIGTERM, deliveries in flight get this long to finish (and record their outcome);
# what is still under way is cancelled and keeps its lease, to be retried after it.
DRAIN_S = 8.0


@dataclass(frozen=True)
class DeliverySettings:
    timeout_s: float = 10.0
    retry_for_s: float = 86_400.0
    retry_base_s: float = 5.0
    retry_max_delay_s: float = 3_600.0
    lease_s: float = 60.0
    concurrency: int = 64
    endpoint_concurrency: int = 4
    allow_private: bool = False
    poll_s: float = IDLE_POLL_S
    drain_s: float = DRAIN_S

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliverySettings:
        return cls(
            timeout_s=settings.webhook_timeout_s,
            retry_for_s=settings.webhook_retry_for_s,
            retry_base_s=settings.webhook_retry_base_s,
            retry_max_delay_s=settings.webhook_retry_max_delay_s,
            # A lease must outlast the attempt and the recording of its outcome.
            lease_s=max(settings.webhook_lease_s, settings.webhook_timeout_s + 10),
            concurrency=settings.webhook_concurrency,
            endpoint_concurrency=settings.webhook_endpoint_concurrency,
            allow_private=settings.webhook_allow_private,
        )

    def retry_delay(self, failures: int) -> float:
        """The pause after the `failures`-th failure in a row (of a delivery, or of an
        endpoint): base·2^(failures-1) capped, then between half and all of that."""
        return backoff_delay(failures, cap=self.retry_max_delay_s, base=self.retry_base_s)


@dataclass(frozen=True)
class Claimed:
    """One delivery taken for one attempt, with what the POST needs."""

    id: int
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    routing_key: str
    attempts: int
    lease_id: uuid.UUID
    body: bytes
    url: str
    sealed_secret: str
    endpoint_failures: int
    took_over: bool


@dataclass(frozen=True)
class Outcome:
    kind: str  # "delivered", "gone" or "failed"
    status: int | None = None
    error: str | None = None


async def register_event_types(pool: asyncpg.Pool) -> None:
    """Make every public event of this version deliverable (the fan-out trigger delivers
    only routing keys listed in `webhook_event_types`)."""
    await pool.execute(
        "INSERT INTO webhook_event_types (routing_key) SELECT unnest($1::text[]) "
        "ON CONFLICT DO NOTHING",
        sorted(PUBLIC_EVENTS),
    )


def open_session(settings: DeliverySettings) -> aiohttp.ClientSession:
    """The HTTP client of every delivery: connections reused, no cookies kept (nothing
    passes from one receiver to another), no proxy from the environment, and — unless
    private destinations are allowed — a resolver that connects to checked addresses
    only (service.ssrf)."""
    resolver = None if settings.allow_private else ssrf.GuardedResolver()
    connector = aiohttp.TCPConnector(limit=settings.concurrency, resolver=resolver)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


# --- claims -----------------------------------------------------------------------------

# The endpoints to serve now: enabled, not pausing after a failure, with a due delivery;
# the least recently served first. Locked (FOR NO KEY UPDATE, which the fan-out
# trigger's foreign-key checks do not wait for) so that one dispatcher at a time counts
# and takes an endpoint's deliveries; others skip it for this round.
LOCK_ENDPOINTS = """
SELECT e.id
  FROM webhook_endpoints e
 WHERE e.disabled_at IS NULL
   AND (e.retry_at IS NULL OR e.retry_at <= now())
   AND EXISTS (SELECT 1 FROM webhook_deliveries d
                WHERE d.endpoint_id = e.id AND d.status = 'pending'
                  AND d.next_attempt_at <= now())
 ORDER BY e.served_at NULLS FIRST, e.id
 LIMIT $1
   FOR NO KEY UPDATE OF e SKIP LOCKED
"""

# Under those locks (and a fresh snapshot: every claim committed before is seen): each
# endpoint's free slots (its cap, 1 while it is failing, less its live leases), its due
# deliveries up to that many, the first of every endpoint before the second of any, at
# most $3 in all; each claimed with attempts + 1 and a lease, and returned with its body.
CLAIM = """
WITH endpoint AS (
    UPDATE webhook_endpoints e
       SET served_at = clock_timestamp()
     WHERE e.id = ANY($1::uuid[])
    RETURNING e.id, e.url, e.sealed_secret, e.failures,
              array_position($1::uuid[], e.id) AS turn,
              greatest(0, CASE WHEN e.failures > 0 THEN 1 ELSE $2::int END
                          - (SELECT count(*) FROM webhook_deliveries f
                              WHERE f.endpoint_id = e.id AND f.lease_until > now()))::int
                  AS free
), candidate AS (
    SELECT due.id, due.lease_until AS old_lease
      FROM endpoint
     CROSS JOIN LATERAL (
        SELECT s.id, s.lease_until, row_number() OVER (ORDER BY s.next_attempt_at, s.id) AS rank
          FROM (SELECT d.id, d.lease_until, d.next_attempt_at
                  FROM webhook_deliveries d
                 WHERE d.endpoint_id = endpoint.id AND d.status = 'pending'
                   AND d.next_attempt_at <= now()
                 ORDER BY d.next_attempt_at, d.id
                 LIMIT endpoint.free
                   FOR UPDATE SKIP LOCKED) s
     ) due
     ORDER BY due.rank, endpoint.turn
     LIMIT $3
), claimed AS (
    UPDATE webhook_deliveries d
       SET attempts = d.attempts + 1,
           lease_id = $4,
           lease_until = now() + make_interval(secs => $5),
           next_attempt_at = now() + make_interval(secs => $5)
      FROM candidate
     WHERE d.id = candidate.id
    RETURNING d.id, d.endpoint_id, d.outbox_id, d.event_id, d.routing_key, d.attempts,
              candidate.old_lease IS NOT NULL AS took_over
)
SELECT c.*, o.body, endpoint.url, endpoint.sealed_secret, endpoint.failures
  FROM claimed c
  JOIN endpoint ON endpoint.id = c.endpoint_id
  JOIN outbox o ON o.id = c.outbox_id
 ORDER BY c.id
"""


def _body_bytes(body: object) -> bytes:
    """The CloudEvent JSON as POSTed (and signed): compact, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


async def claim(pool: asyncpg.Pool, *, limit: int, settings: DeliverySettings) -> list[Claimed]:
    """Take up to `limit` due deliveries for one attempt each (committed before the POST)."""
    lease_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        endpoints = [row["id"] for row in await conn.fetch(LOCK_ENDPOINTS, limit)]
        if not endpoints:
            return []
        rows = await conn.fetch(
            CLAIM, endpoints, settings.endpoint_concurrency, limit, lease_id, settings.lease_s
        )
    return [
        Claimed(
            id=row["id"],
            endpoint_id=row["endpoint_id"],
            event_id=row["event_id"],
            routing_key=row["routing_key"],
            attempts=row["attempts"],
            lease_id=lease_id,
            body=_body_bytes(row["body"]),
            url=row["url"],
            sealed_secret=row["sealed_secret"],
            endpoint_failures=row["failures"],
            took_over=row["took_over"],
        )
        for row in rows
    ]


# Seconds until the next delivery may be claimed: the earliest due time of an enabled
# endpoint with a free slot (one in flight is enough while it is failing), no earlier
# than its pause after a failure. NULL when there is nothing to wait for.
NEXT_DUE = """
SELECT extract(epoch FROM min(greatest(first.next_attempt_at, e.retry_at)) - now())
  FROM webhook_endpoints e
 CROSS JOIN LATERAL (SELECT d.next_attempt_at FROM webhook_deliveries d
                      WHERE d.endpoint_id = e.id AND d.status = 'pending'
                      ORDER BY d.next_attempt_at LIMIT 1) first
 WHERE e.disabled_at IS NULL
   AND (SELECT count(*) FROM webhook_deliveries f
         WHERE f.endpoint_id = e.id AND f.lease_until > now())
       < CASE WHEN e.failures > 0 THEN 1 ELSE $1::int END
"""


async def seconds_until_due(pool: asyncpg.Pool, settings: DeliverySettings) -> float:
    """How long the dispatcher may sleep (at most `poll_s`) unless something wakes it."""
    due = await pool.fetchval(NEXT_DUE, settings.endpoint_concurrency)
    if due is None:
        return settings.poll_s
    return min(settings.poll_s, max(0.01, float(due)))


# --- attempts ---------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


async def post(
    session: aiohttp.ClientSession,
    delivery: Claimed,
    key: bytes,
    settings: DeliverySettings,
) -> Outcome:
    """One signed POST of the delivery's CloudEvent; its outcome (never raises for
    anything the receiver or the network did)."""
    try:
        ssrf.check_url_syntax(delivery.url, allow_private=settings.allow_private)
    except ssrf.DestinationRefused as exc:
        return Outcome("failed", error=f"destination refused: {exc}")
    headers = {
        "Content-Type": CONTENT_TYPE,
        **signed_headers(key, str(delivery.event_id), delivery.body),
    }
    try:
        async with session.post(
            delivery.url,
            data=delivery.body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=settings.timeout_s),
        ) as response:
            await response.content.read(MAX_RESPONSE_BYTES)
            status = response.status
    except TimeoutError:
        return Outcome("failed", error=f"no answer within {settings.timeout_s:g} s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Outcome("failed", error=describe(exc))
    if 200 <= status < 300:
        return Outcome("delivered", status)
    if status == 410:
        return Outcome("gone", status, "HTTP 410 Gone: the receiver asked for no more deliveries")
    return Outcome("failed", status, f"HTTP {status}")


# --- outcomes ---------------------------------------------------------------------------

# Delivered (by whichever claim: a copy that took our expired lease over may be under
# way, but the event has arrived). An endpoint that was failing is healthy again, and its
# waiting deliveries are due at once: a receiver back from an outage gets its backlog now.
RECORD_DELIVERED = """
WITH done AS (
    UPDATE webhook_deliveries
       SET status = 'delivered', delivered_at = now(), lease_until = NULL, lease_id = NULL,
           last_status = $2, last_error = NULL
     WHERE id = $1 AND status = 'pending'
    RETURNING endpoint_id
), healed AS (
    UPDATE webhook_endpoints e
       SET failures = 0, retry_at = NULL, last_error = NULL
      FROM done
     WHERE e.id = done.endpoint_id AND e.failures > 0
    RETURNING e.id
), resumed AS (
    UPDATE webhook_deliveries d
       SET next_attempt_at = now()
      FROM healed
     WHERE d.endpoint_id = healed.id AND d.status = 'pending' AND d.lease_until IS NULL
       AND d.next_attempt_at > now()
    RETURNING d.id
)
SELECT (SELECT count(*) FROM resumed) AS resumed
"""

# 410 Gone: the delivery is parked (replayable) and the endpoint disabled at once.
RECORD_GONE = """
WITH parked AS (
    UPDATE webhook_deliveries
       SET status = 'parked', parked_at = now(), lease_until = NULL, lease_id = NULL,
           last_status = $2, last_error = $3
     WHERE id = $1 AND lease_id = $4 AND status = 'pending'
    RETURNING id
)
UPDATE webhook_endpoints
   SET disabled_at = now(), disabled_reason = $3, last_error = $3
 WHERE id = $5 AND disabled_at IS NULL
"""

# Failed: retried after `$4` seconds unless that falls beyond its retry window (then
# parked). Only while our claim holds: a copy that took it over records its own. The
# endpoint pauses for `$7` s (one delivery at a time until one succeeds), and its
# deliveries whose window has closed meanwhile are parked too — while the endpoint fails
# they might otherwise wait for their turn for ever.
RECORD_FAILED = """
WITH failed AS (
    UPDATE webhook_deliveries d
       SET lease_until = NULL, lease_id = NULL, last_status = $2, last_error = $3,
           next_attempt_at = now() + make_interval(secs => $4),
           status = CASE WHEN d.retry_from + make_interval(secs => $5)
                              <= now() + make_interval(secs => $4)
                         THEN 'parked' ELSE 'pending' END,
           parked_at = CASE WHEN d.retry_from + make_interval(secs => $5)
                                 <= now() + make_interval(secs => $4)
                            THEN now() END
     WHERE d.id = $1 AND d.lease_id = $6 AND d.status = 'pending'
    RETURNING d.status
), paused AS (
    UPDATE webhook_endpoints
       SET failures = failures + 1, retry_at = now() + make_interval(secs => $7),
           last_error = $3
     WHERE id = $8
    RETURNING id
), expired AS (
    UPDATE webhook_deliveries d
       SET status = 'parked', parked_at = now(),
           last_error = coalesce(d.last_error, 'not delivered within the retry window')
     WHERE d.endpoint_id = $8 AND d.id <> $1 AND d.status = 'pending'
       AND d.retry_from + make_interval(secs => $5) <= now()
       AND (d.lease_until IS NULL OR d.lease_until < now())
    RETURNING d.id
)
SELECT (SELECT status FROM failed) AS status, (SELECT count(*) FROM expired) AS expired
"""


async def record(
    pool: asyncpg.Pool, delivery: Claimed, outcome: Outcome, settings: DeliverySettings
) -> str:
    """Record an attempt's outcome; what became of the delivery (for metrics and logs):
    delivered, gone, retry, parked, or "superseded" when another claim holds it now."""
    async with pool.acquire() as conn:
        if outcome.kind == "delivered":
            resumed = await conn.fetchval(RECORD_DELIVERED, delivery.id, outcome.status)
            if resumed:
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
            return "delivered"
        if outcome.kind == "gone":
            await conn.execute(
                RECORD_GONE,
                delivery.id,
                outcome.status,
                outcome.error,
                delivery.lease_id,
                delivery.endpoint_id,
            )
            return "gone"
        row = await conn.fetchrow(
            RECORD_FAILED,
            delivery.id,
            outcome.status,
            outcome.error,
            settings.retry_delay(delivery.attempts),
            settings.retry_for_s,
            delivery.lease_id,
            settings.retry_delay(delivery.endpoint_failures + 1),
            delivery.endpoint_id,
        )
    if row["expired"]:
        metrics.WEBHOOK_DELIVERIES.labels("parked").inc(row["expired"])
        log.warning(
            "webhook deliveries parked: retry window over",
            extra={"endpoint_id": str(delivery.endpoint_id), "parked": row["expired"]},
        )
    if row["status"] is None:
        return "superseded"
    return "parked" if row["status"] == "parked" else "retry"


# --- the dispatcher ---------------------------------------------------------------------


class Dispatcher:
    """Claims due deliveries and POSTs them, each in a task of its own.

    `run(stop)` is a supervised task: a lost database restarts it after a backoff, while
    POSTs already under way go on (they belong to the dispatcher, not to one `run`).
    `wake` is set by the LISTEN on CHANNEL (new deliveries) and whenever a POST ends (a
    slot is free)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        settings: DeliverySettings,
        *,
        private_key: str,
    ) -> None:
        self._pool = pool
        self._session = session
        self._settings = settings
        self._private_key = private_key
        self._keys: dict[tuple[uuid.UUID, str], bytes] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def status(self) -> str:
        """For /readyz: "ok" while the HTTP client is open."""
        return "closed" if self._session.closed else "ok"

    async def run(self, stop: asyncio.Event) -> None:
        log.info("webhook dispatcher started")
        while not stop.is_set():
            self.wake.clear()  # a notification during the pass below makes for another
            free = self._settings.concurrency - len(self._in_flight)
            if free > 0:
                claimed = await claim(self._pool, limit=free, settings=self._settings)
                for delivery in claimed:
                    self._start(delivery)
                if claimed:
                    continue
                timeout = await seconds_until_due(self._pool, self._settings)
            else:
                timeout = self._settings.poll_s
            await wait_for_either(self.wake, stop, timeout=timeout)
        await self._drain(self._settings.drain_s)
        log.info("webhook dispatcher stopped")

    async def close(self) -> None:
        """After `run` has ended: cancel what is still in flight (its lease expires)."""
        await self._drain(0)

    async def _drain(self, timeout: float) -> None:
        if self._in_flight and timeout > 0:
            await asyncio.wait(set(self._in_flight), timeout=timeout)
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _start(self, delivery: Claimed) -> None:
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
        self._in_flight.add(task)
        metrics.WEBHOOKS_IN_FLIGHT.inc()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        metrics.WEBHOOKS_IN_FLIGHT.dec()
        self.wake.set()

    def _key_of(self, delivery: Claimed) -> bytes:
        """The endpoint's HMAC key, opened once per process (and per secret)."""
        cache_key = (delivery.endpoint_id, delivery.sealed_secret)
        key = self._keys.get(cache_key)
        if key is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            key = self._keys[cache_key] = secret_key(
                unseal(delivery.sealed_secret, self._private_key)
            )
        return key

    async def _deliver(self, delivery: Claimed) -> None:
        details = {
            "endpoint_id": str(delivery.endpoint_id),
            "event_id": str(delivery.event_id),
            "routing_key": delivery.routing_key,
            "attempt": delivery.attempts,
        }
        if delivery.took_over:
            metrics.WEBHOOK_LEASE_TAKEOVERS.inc()
            log.warning(
                "took over an expired webhook lease; its holder may have delivered it",
                extra=details,
            )
        started = time.monotonic()
        try:
            key = self._key_of(delivery)
        except (UnsealError, ValueError) as exc:
            outcome = Outcome("failed", error=f"cannot open the signing secret: {exc}")
        else:
            outcome = await post(self._session, delivery, key, self._settings)
        metrics.WEBHOOK_ATTEMPT_SECONDS.labels(outcome.kind).observe(time.monotonic() - started)
        try:
            fate = await retry_transient(
                lambda: record(self._pool, delivery, outcome, self._settings),
                what="recording a webhook attempt",
                deadline_s=self._settings.lease_s / 2,
            )
        except Exception:
            # The lease expires and the delivery is tried again (at least once).
            log.exception("could not record a webhook attempt", extra=details)
            return
        metrics.WEBHOOK_DELIVERIES.labels(fate).inc()
        details |= {"status": outcome.status, "outcome": fate}
        if fate == "delivered":
            log.info("webhook delivered", extra=details)
        elif fate == "gone":
            log.warning("webhook endpoint disabled: the receiver answered 410", extra=details)
        else:
            log.warning("webhook not delivered", extra=details | {"error": outcome.error})
