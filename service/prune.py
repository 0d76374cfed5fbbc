"""Pruning: delete what retention no longer needs, in small batches (docs/pruning.md).

Run by `registrar prune` and, every REGISTRAR_PRUNE_INTERVAL_S, by the outbox worker.
Each batch is one DELETE of at most `batch` rows, its own short transaction, that takes
its rows with FOR UPDATE SKIP LOCKED: it never waits for a row the registration path holds
(nor for one another pruner holds), so several pruners may run at once, each deleting (and
counting) rows the others do not.

Every step names the age column that decides (indexed, migration 0017) and its retention.
Most steps delete every row older than that. Three keep some old rows (`keep`): published
outbox rows a webhook delivery still refers to, the newest activation token of a user still
awaiting activation (a resend reuses its URL), and the activation emails the resend
throttle still counts. Those steps walk the age index newest first with a cursor, so that
rows kept are looked at once per run, not once per batch.

Never pruned: unpublished or parked outbox rows (parked ones are an operator's to look
at), pending webhook deliveries, emails still pending or being sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from service import metrics
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """Seconds each kind of row is kept (REGISTRAR_RETENTION_*_S)."""

    outbox: float
    processed: float
    requests: float
    tokens: float
    parked: float
    expired: float = 0.0  # captcha solutions: only until they expire

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(
            outbox=settings.retention_outbox_s,
            processed=settings.retention_processed_s,
            requests=settings.retention_requests_s,
            tokens=settings.retention_tokens_s,
            parked=settings.retention_parked_s,
        )


@dataclass(frozen=True)
class Step:
    """One kind of row to prune: `table`'s rows (alias `t`) whose `age` column is older
    than the `retention` named, and that match `where`; but none that match `keep`."""

    table: str
    rows: str  # what these rows are, for the output: "published", "expired", ...
    retention: str  # a field of Retention
    age: str
    where: str = "true"
    key: str = "id"
    keep: str | None = None
    # With `keep`: the cursor starts above every key (the key must be a single column).
    max_key: object = None

    def delete_sql(self) -> str:
        if self.keep is None:
            return (
                f"DELETE FROM {self.table} WHERE ({self.key}) IN ("
                f"SELECT {self.key} FROM {self.table} AS t "
                f"WHERE t.{self.age} < $1 AND ({self.where}) "
                f"LIMIT $2 FOR UPDATE SKIP LOCKED)"
            )
        # A page of old rows newest first below the cursor ($1, $2): those not kept go;
        # the page's last row is the next cursor.
        return f"""
WITH page AS (
    SELECT t.{self.key} AS page_key, t.{self.age} AS page_age FROM {self.table} AS t
     WHERE (t.{self.age}, t.{self.key}) < ($1, $2) AND ({self.where})
     ORDER BY t.{self.age} DESC, t.{self.key} DESC
     LIMIT $3 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM {self.table} AS t USING page
     WHERE t.{self.key} = page.page_key AND NOT ({self.keep})
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM page) AS examined,
       last.page_age, last.page_key
  FROM (SELECT page_age, page_key FROM page ORDER BY page_age, page_key LIMIT 1) AS last
"""

    def count_sql(self) -> str:
        keep = f" AND NOT ({self.keep})" if self.keep else ""
        return (
            f"SELECT count(*) FROM {self.table} AS t "
            f"WHERE t.{self.age} < $1 AND ({self.where}){keep}"
        )


MAX_UUID = uuid.UUID(int=2**128 - 1)
MAX_BIGINT = 2**63 - 1

# The resend throttle (workers/activation.py) reads the two newest activation emails to an
# address since its user registered: the older is the registration's, so only a newer one
# within REGISTRAR_RESEND_INTERVAL_S holds a resend back. While the address's user awaits
# activation, an email stays unless two newer ones to the address exist; what the
# throttle reads is then the same before and after. (The recovery throttle only looks
# back one interval, far less than any retention.)
THROTTLE_NEEDS = """
t.kind = 'activation'
AND EXISTS (SELECT FROM users u WHERE u.tenant_id = t.tenant_id
                AND lower(u.email) = lower(t.recipient) AND NOT u.is_approved)
AND (SELECT count(*) FROM (SELECT FROM emails n
                            WHERE n.tenant_id = t.tenant_id
                              AND lower(n.recipient) = lower(t.recipient)
                              AND n.kind = t.kind AND n.created_at > t.created_at
                            LIMIT 2) AS newer) < 2
"""

# In order: deliveries before the outbox rows they refer to (a foreign key).
STEPS: tuple[Step, ...] = (
    Step("captcha_solutions", "expired", "expired", "expires_at", key="challenge"),
    Step("processed_messages", "applied", "processed", "processed_at", key="consumer, message_id"),
    Step(
        "registration_requests",
        "decided",
        "requests",
        "decided_at",
        where="t.status IN ('registered', 'rejected')",
    ),
    Step(
        "registration_requests",
        "undecided",
        "parked",
        "created_at",
        where="t.status IN ('pending', 'failed')",
    ),
    Step("invite_requests", "recorded", "requests", "created_at"),
    Step("account_requests", "unclaimed", "requests", "created_at"),
    Step(
        "activation_tokens",
        "expired",
        "tokens",
        "expires_at",
        # A resend reuses the newest URL of a user awaiting activation.
        keep="""t.activation_url IS NOT NULL
            AND EXISTS (SELECT FROM users u WHERE u.id = t.user_id AND NOT u.is_approved)
            AND NOT EXISTS (SELECT FROM activation_tokens n WHERE n.user_id = t.user_id
                                AND n.activation_url IS NOT NULL
                                AND n.created_at > t.created_at)""",
        max_key=MAX_UUID,
    ),
    Step("password_recovery_tokens", "expired", "tokens", "expires_at"),
    Step("invitations", "expired", "tokens", "expires_at"),
    Step("user_sessions", "expired", "tokens", "expires_at"),
    Step(
        "emails",
        "sent",
        "requests",
        "created_at",
        where="t.status = 'sent'",
        keep=THROTTLE_NEEDS,
        max_key=MAX_UUID,
    ),
    Step(
        "emails",
        "failed",
        "parked",
        "created_at",
        where="t.status = 'failed'",
        keep=THROTTLE_NEEDS,
        max_key=MAX_UUID,
    ),
    Step(
        "webhook_deliveries", "delivered", "outbox", "delivered_at", where="t.status = 'delivered'"
    ),
    Step("webhook_deliveries", "parked", "parked", "parked_at", where="t.status = 'parked'"),
    Step(
        "outbox",
        "published",
        "outbox",
        "published_at",
        # (IS NOT NULL: what lets the planner use the partial index outbox_published)
        where="t.published_at IS NOT NULL AND t.parked_at IS NULL",
        keep="EXISTS (SELECT FROM webhook_deliveries d WHERE d.outbox_id = t.id)",
        max_key=MAX_BIGINT,
    ),
)


@dataclass(frozen=True)
class StepResult:
    table: str
    rows: str
    retention_s: float
    deleted: int  # or, in a dry run, how many would be


async def _cutoff(pool: asyncpg.Pool, seconds: float) -> dt.datetime:
    # The database's clock, as every age column was written with it.
    return await pool.fetchval("SELECT now() - make_interval(secs => $1)", seconds)


async def _delete(
    pool: asyncpg.Pool, step: Step, cutoff: dt.datetime, batch: int, stopping: Callable[[], bool]
) -> int:
    sql = step.delete_sql()
    deleted = 0
    if step.keep is None:
        while True:
            done = int((await pool.execute(sql, cutoff, batch)).split()[-1])
            deleted += done
            if done < batch or stopping():
                return deleted
    cursor = (cutoff, step.max_key)
    while True:
        page = await pool.fetchrow(sql, *cursor, batch)
        if page is None:  # nothing older than the cursor
            return deleted
        deleted += page["deleted"]
        if page["examined"] < batch or stopping():
            return deleted
        cursor = (page["page_age"], page["page_key"])


async def prune(
    pool: asyncpg.Pool,
    retention: Retention,
    *,
    batch: int,
    dry_run: bool = False,
    on_step: Callable[[StepResult], None] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> list[StepResult]:
    """Run every step (in a dry run, count instead of deleting: outbox rows that deleting
    their webhook deliveries would free are not counted); `on_step` hears each
    result as it is known. `stopping()` true ends a step after its current batch and skips
    the rest (a worker shutting down)."""
    results = []
    for step in STEPS:
        if stopping():
            break
        seconds = getattr(retention, step.retention)
        cutoff = await _cutoff(pool, seconds)
        if dry_run:
            count = await pool.fetchval(step.count_sql(), cutoff)
        else:
            count = await _delete(pool, step, cutoff, batch, stopping)
            metrics.PRUNED_ROWS.labels(step.table).inc(count)
        result = StepResult(step.table, step.rows, seconds, count)
        results.append(result)
        if on_step is not None:
            on_step(result)
    return results


TABLE_SIZES = """
SELECT c.relname AS table_name, greatest(c.reltuples, 0)::bigint AS row_estimate,
       pg_total_relation_size(c.oid) AS bytes
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
"""


async def record_table_sizes(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    """Set the table-size gauges: each table's estimated rows (the planner's, as of the
    last VACUUM or ANALYZE: no count of a large table) and bytes with indexes and TOAST."""
    sizes = {}
    for row in await pool.fetch(TABLE_SIZES):
        metrics.TABLE_ROWS.labels(row["table_name"]).set(row["row_estimate"])
        metrics.TABLE_BYTES.labels(row["table_name"]).set(row["bytes"])
        sizes[row["table_name"]] = (row["row_estimate"], row["bytes"])
    return sizes


async def prune_cycle(
    pool: asyncpg.Pool, retention: Retention, *, batch: int, stopping: Callable[[], bool]
) -> list[StepResult]:
    """One periodic run: prune, log what went, refresh the table sizes."""
    started = time.monotonic()
    results = await prune(pool, retention, batch=batch, stopping=stopping)
    deleted = {f"{r.table}.{r.rows}": r.deleted for r in results if r.deleted}
    log.info(
        "pruned",
        extra={"deleted": deleted, "seconds": round(time.monotonic() - started, 3)},
    )
    metrics.PRUNE_LAST_RUN.set_to_current_time()
    await record_table_sizes(pool)
    return results
