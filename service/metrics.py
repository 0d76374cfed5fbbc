"""Prometheus metrics of every registrar process (gateway and workers alike).

Module-level collectors in the default registry: one set per process, whatever runs in it.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "registrar_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "registrar_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PUBLISHED = Counter(
    "registrar_messages_published_total", "Messages confirmed by the broker", ["routing_key"]
)
PUBLISH_FAILED = Counter(
    "registrar_messages_publish_failed_total",
    "Messages the broker did not confirm",
    ["routing_key"],
)
CONSUMED = Counter(
    "registrar_messages_consumed_total",
    "Messages handled by workers, by outcome",
    ["queue", "routing_key", "outcome"],  # outcome: ack, retry, dead_letter
)
HASH_SECONDS = Histogram(
    "registrar_password_hash_seconds",
    "argon2id hashing time",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6),
)
PASSWORD_CHECKS = Counter(
    "registrar_password_checks_total",
    "Password checks in the gateway (login, old password, account deletion), by outcome",
    ["outcome"],
)
INTAKE_BATCH = Histogram(
    "registrar_intake_batch_size",
    "Registration requests recorded per database statement by the gateway",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
EMAILS_SENT = Counter("registrar_emails_sent_total", "Emails accepted by SMTP", ["kind"])
EMAILS_FAILED = Counter("registrar_emails_failed_total", "Emails given up on", ["kind"])
EMAIL_LEASE_TAKEOVERS = Counter(
    "registrar_email_lease_takeovers_total",
    "Emails re-sent after an earlier claim's lease expired (a crash between the SMTP "
    "server's 250 and our commit would make this a duplicate)",
    ["kind"],
)
WEBHOOK_DELIVERIES = Counter(
    "registrar_webhook_deliveries_total",
    "Webhook attempts by outcome: delivered, retry, parked (given up; replayable), gone "
    "(410: the endpoint was disabled)",
    ["outcome"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "registrar_webhook_attempt_duration_seconds",
    "Time of one webhook POST, by outcome",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOKS_IN_FLIGHT = Gauge("registrar_webhooks_in_flight", "Webhook POSTs under way")
WEBHOOK_LEASE_TAKEOVERS = Counter(
    "registrar_webhook_lease_takeovers_total",
    "Webhook deliveries taken over after an earlier claim's lease expired (its holder "
    "may have delivered it: the receiver sees the same webhook-id twice)",
)
OUTBOX_PARKED = Counter(
    "registrar_outbox_parked_total",
    "Outbox rows given up on after repeated failures",
    ["routing_key"],
)
PRUNED_ROWS = Counter(
    "registrar_pruned_rows_total",
    "Rows deleted by pruning (registrar prune, the outbox worker), by table",
    ["table"],
)
PRUNE_LAST_RUN = Gauge(
    "registrar_prune_last_run_timestamp_seconds",
    "When this process last finished a periodic prune (the outbox worker)",
)
# Set by the outbox worker after each prune: a table that keeps growing although pruning
# runs holds something retention does not cover (parked rows, say: docs/pruning.md).
TABLE_ROWS = Gauge(
    "registrar_table_rows",
    "Rows in a table, PostgreSQL's estimate (pg_class.reltuples, as of the last (auto)vacuum "
    "or analyze)",
    ["table"],
)
TABLE_BYTES = Gauge(
    "registrar_table_bytes",
    "Bytes on disk of a table with its indexes and TOAST (pg_total_relation_size)",
    ["table"],
)
TASK_RESTARTS = Counter(
    "registrar_task_restarts_total", "Supervised tasks restarted after a transient error", ["task"]
)
TASK_UP = Gauge("registrar_task_up", "1 while a supervised task is running and healthy", ["task"])


async def metrics_view(_request: web.Request) -> web.Response:
    """GET /metrics in the Prometheus text format."""
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def readiness_response(checks: dict[str, str]) -> web.Response:
    """/readyz: each check "ok" or why not; 200 only when every one is ok."""
    ready = all(value == "ok" for value in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


async def serve_metrics(
    host: str, port: int, *, readiness: Callable[[], dict[str, str]] | None = None
) -> web.AppRunner:
    """A small HTTP server for a worker process: /metrics, /healthz, and /readyz (each
    essential task and consumer: "ok" or why not; 503 unless all are ok)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        return readiness_response(readiness() if readiness else {})

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
