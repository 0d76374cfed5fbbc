"""Recording registration requests in batches: one statement for many concurrent requests.

Every accepted registration needs a pending request row and its command in the outbox
(service.submissions says why), and, for a captcha tenant, its solution marked used. Done
per request, that is a transaction of four or five round trips and a commit each. Here
the requests that arrive while one statement is in flight wait for the next, and one
statement records them all: at low load a request waits for nothing but its own round
trip, under load hundreds share one. The same statement also marks the commands the
broker has confirmed since as published (they were kept for the relay until then).

A statement is atomic, so each request of a batch is recorded whole or not at all, with
the same outcomes as one transaction per request:

* `inserted` — recorded; publish its command.
* not inserted, `solved` — the Idempotency-Key was taken (by an earlier or concurrent
  request): answer as that request does. The captcha solution stays used, as before.
* not `solved` — its captcha solution was used already: nothing was recorded.

If the statement fails (PostgreSQL away), every request of the batch gets that error
(503, the client retries) and the confirmed ids wait for the next statement; if they
never get there (the process dies) the relay publishes a copy after the grace period,
which the worker recognises by its id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

import asyncpg

from service import metrics
from service.errors import RetryableError
from service.supervisor import is_transient

log = logging.getLogger(__name__)

MAX_BATCH = 500
# Confirmed commands are marked published with the next batch, or after this long idle
# (longer, up to MARK_DELAY_MAX_S, while marking fails).
MARK_DELAY_S = 0.2
MARK_DELAY_MAX_S = 5.0
# Beyond this many unmarked ids (database away for long), the oldest are left to the relay.
MAX_UNMARKED = 50_000

RECORD_BATCH = """
WITH batch AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $14::jsonb[])
        AS b(id, tenant_id, idempotency_key, fingerprint, email, user_name, locale,
             challenge, routing_key, command, admin)
),
expired AS (
    DELETE FROM captcha_solutions
    WHERE expires_at < now() AND EXISTS (SELECT 1 FROM batch WHERE challenge IS NOT NULL)
),
solved AS (
    INSERT INTO captcha_solutions (challenge, tenant_id, expires_at)
    SELECT challenge, tenant_id, now() + $11::interval FROM batch WHERE challenge IS NOT NULL
    ON CONFLICT (challenge) DO NOTHING
    RETURNING challenge
),
requests AS (
    INSERT INTO registration_requests
           (id, tenant_id, idempotency_key, body_fingerprint, email, user_name, locale, admin)
    SELECT id, tenant_id, idempotency_key, fingerprint, email, user_name, locale, admin
    FROM batch
    WHERE challenge IS NULL OR challenge IN (SELECT challenge FROM solved)
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING id
),
commands AS (
    INSERT INTO outbox (event_id, routing_key, body, available_at)
    SELECT b.id, b.routing_key, b.command::jsonb, now() + $12::interval
    FROM batch b JOIN requests r USING (id)
    ON CONFLICT (event_id) DO NOTHING
),
published AS (
    -- Sealed secrets are not kept longer than needed, even sealed.
    UPDATE outbox SET published_at = now(), body = body #- '{data,sealedPassword}'
    WHERE event_id = ANY($13::uuid[]) AND published_at IS NULL
)
SELECT b.id,
       b.id IN (SELECT id FROM requests) AS inserted,
       b.challenge IS NULL OR b.challenge IN (SELECT challenge FROM solved) AS solved
FROM batch b
"""

MARK_PUBLISHED = """
UPDATE outbox SET published_at = now(), body = body #- '{data,sealedPassword}'
WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL
"""


@dataclass(frozen=True)
class PendingRequest:
    """One registration request and its command, ready to be recorded."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    idempotency_key: str | None
    fingerprint: bytes
    email: str
    user_name: str
    locale: str
    challenge: str | None  # a captcha solution to mark used, or None
    routing_key: str
    command_json: str  # the CloudEvent as the outbox keeps it
    admin: dict[str, object] | None = None  # an administrator's choices (POST /users)


@dataclass(frozen=True)
class Recorded:
    inserted: bool
    solved: bool


@dataclass
class _Entry:
    request: PendingRequest
    future: asyncio.Future = field(repr=False)


class Intake:
    """Batches `record` calls into single statements; `run()` is a supervised task."""

    def __init__(self, pool: asyncpg.Pool, *, grace_s: float, captcha_validity: dt.timedelta):
        self._pool = pool
        self._grace = dt.timedelta(seconds=grace_s)
        self._captcha_validity = captcha_validity
        self._queue: list[_Entry] = []
        self._unmarked: list[uuid.UUID] = []
        self._wake = asyncio.Event()
        self._mark_delay = MARK_DELAY_S
        self._stopped = False
        self.batches = 0  # statements run, for tests and metrics

    async def record(self, request: PendingRequest) -> Recorded:
        """Record one request with the next batch; raises what the statement raised, or
        RetryableError (503) once the intake has stopped."""
        if self._stopped:
            raise RetryableError("the gateway is stopping")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Entry(request, future))
        self._wake.set()
        return await future

    def confirmed(self, event_id: uuid.UUID) -> None:
        """The broker confirmed this command: mark it published with the next statement."""
        self._unmarked.append(event_id)
        if len(self._unmarked) > MAX_UNMARKED:
            del self._unmarked[: len(self._unmarked) - MAX_UNMARKED]
        self._wake.set()

    async def run(self) -> None:
        """Run statements until cancelled; a failed one fails its batch, not this loop.
        Requests still queued when it ends get a RetryableError instead of waiting."""
        self._stopped = False  # (again, if the supervisor restarts it)
        try:
            await self._loop()
        finally:
            self._stopped = True
            queued, self._queue = self._queue, []
            _fail(queued, RetryableError("the gateway is stopping"))

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                if self._unmarked:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._mark_delay)
                    except TimeoutError:
                        await self._mark_only()
                        continue
                else:
                    await self._wake.wait()
            if self._queue:
                await self._record_batch(self._take_batch())

    async def flush(self) -> None:
        """Mark what was confirmed (at shutdown); best effort, the relay covers the rest."""
        if self._unmarked:
            await self._mark_only()

    def _take_batch(self) -> list[_Entry]:
        """Up to MAX_BATCH entries, never two with the same captcha solution: of those,
        only the first is in this batch, so the second finds the solution used."""
        batch: list[_Entry] = []
        seen: set[str] = set()
        rest: list[_Entry] = []
        for entry in self._queue:
            challenge = entry.request.challenge
            if len(batch) >= MAX_BATCH or (challenge is not None and challenge in seen):
                rest.append(entry)
                continue
            if challenge is not None:
                seen.add(challenge)
            batch.append(entry)
        self._queue = rest
        return batch

    async def _record_batch(self, batch: list[_Entry]) -> None:
        marked, self._unmarked = self._unmarked, []
        *columns, admin = zip(*(_row(e.request) for e in batch), strict=True)
        try:
            rows = await self._pool.fetch(
                RECORD_BATCH, *columns, self._captcha_validity, self._grace, marked, admin
            )
        except asyncio.CancelledError:
            self._unmarked[:0] = marked
            _fail(batch, RetryableError("the gateway is stopping"))
            raise
        except Exception as exc:
            self._unmarked[:0] = marked
            if len(batch) > 1 and not is_transient(exc):
                # One request the database refuses must not fail the others with it.
                for entry in batch:
                    await self._record_batch([entry])
                return
            log.warning("recording a batch failed", extra={"error": type(exc).__name__})
            _fail(batch, exc)
            return
        self.batches += 1
        metrics.INTAKE_BATCH.observe(len(batch))
        outcomes = {row["id"]: Recorded(row["inserted"], row["solved"]) for row in rows}
        for entry in batch:
            if not entry.future.done():
                entry.future.set_result(outcomes[entry.request.id])

    async def _mark_only(self) -> None:
        marked, self._unmarked = self._unmarked, []
        try:
            await self._pool.execute(MARK_PUBLISHED, marked)
            self._mark_delay = MARK_DELAY_S
        except Exception as exc:
            self._unmarked[:0] = marked
            self._mark_delay = min(self._mark_delay * 2, MARK_DELAY_MAX_S)
            log.warning(
                "could not mark confirmed commands published; retrying",
                extra={"count": len(marked), "error": type(exc).__name__},
            )


def _fail(batch: list[_Entry], exc: BaseException) -> None:
    for entry in batch:
        if not entry.future.done():
            entry.future.set_exception(exc)


def _row(request: PendingRequest) -> tuple:
    return (
        request.id,
        request.tenant_id,
        request.idempotency_key,
        request.fingerprint,
        request.email,
        request.user_name,
        request.locale,
        request.challenge,
        request.routing_key,
        request.command_json,
        request.admin,
    )
