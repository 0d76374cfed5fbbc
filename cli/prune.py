"""`registrar prune`: delete what retention no longer needs (service/prune.py), by hand.

Prints one JSON line per kind of row as it is done (table, which rows, the retention in
seconds, how many were deleted, or with --dry-run would be), then a total line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from service import prune, startup
from service.settings import Settings
from service.supervisor import is_transient

# Counting a whole large table in a dry run may take longer than a request may.
DRY_RUN_STATEMENT_TIMEOUT_S = 600.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="delete what retention no longer needs (published outbox rows, old processed-"
        "message records and requests, expired or used tokens)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
    )
    p.add_argument("--batch", type=int, metavar="N", help="rows per DELETE (REGISTRAR_PRUNE_BATCH)")
    p.set_defaults(func=cmd_prune)


def _print_step(result: prune.StepResult, *, dry_run: bool) -> None:
    print(
        json.dumps(
            {
                "table": result.table,
                "rows": result.rows,
                "retentionS": result.retention_s,
                "wouldDelete" if dry_run else "deleted": result.deleted,
            }
        ),
        flush=True,
    )


async def _prune(settings: Settings, *, dry_run: bool, batch: int) -> list[prune.StepResult]:
    timeout = DRY_RUN_STATEMENT_TIMEOUT_S if dry_run else settings.db_statement_timeout_s
    # Straight to PostgreSQL, like migrations: a dry run's count needs its own, longer
    # statement_timeout, which a transaction pooler cannot carry (docs/pgbouncer.md).
    pool = await startup.create_pool(settings, max_size=1, direct=True, statement_timeout_s=timeout)
    try:
        return await prune.prune(
            pool,
            prune.Retention.from_settings(settings),
            batch=batch,
            dry_run=dry_run,
            on_step=lambda result: _print_step(result, dry_run=dry_run),
        )
    finally:
        await pool.close()


def cmd_prune(settings: Settings, args: argparse.Namespace) -> None:
    batch = args.batch or settings.prune_batch
    if batch < 1:
        sys.exit("--batch must be at least 1")
    started = time.monotonic()
    try:
        results = asyncio.run(_prune(settings, dry_run=args.dry_run, batch=batch))
    except Exception as exc:
        if not is_transient(exc):
            raise
        # What was deleted stays deleted (each batch commits); running it again goes on.
        sys.exit(f"prune stopped: {type(exc).__name__}: {exc}")
    total = sum(result.deleted for result in results)
    print(
        json.dumps(
            {
                "wouldDelete" if args.dry_run else "deleted": total,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    )
