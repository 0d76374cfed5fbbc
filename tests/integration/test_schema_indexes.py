"""Every foreign key has an index led by its columns (else a cascading delete or a join
by that key scans the whole referencing table, which grows to millions of rows)."""

from __future__ import annotations

import asyncpg
import pytest

from service import tenants

UNINDEXED_FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text AS table_name, c.conname,
       array_agg(a.attname ORDER BY k.n) AS columns
  FROM pg_constraint c
  CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
 WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
   AND NOT EXISTS (
       SELECT 1 FROM pg_index i
        WHERE i.indrelid = c.conrelid AND i.indpred IS NULL
          AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey
   )
 GROUP BY c.conrelid, c.conname
"""


async def test_every_foreign_key_has_an_index_led_by_its_columns(pool: asyncpg.Pool) -> None:
    missing = [
        f"{row['table_name']}({', '.join(row['columns'])})"
        for row in await pool.fetch(UNINDEXED_FOREIGN_KEYS)
    ]
    assert missing == []


class _Undo(Exception):
    pass


async def test_deleting_expired_captcha_solutions_does_not_scan_the_table(
    pool: asyncpg.Pool,
) -> None:
    """The intake's statement deletes expired solutions on every request with a captcha;
    with ten minutes of solutions in the table that must be an index range scan."""
    tenant, _ = await tenants.create_tenant(
        pool, name="captcha-index", activation_url_prefixes=["https://app.example.com/"]
    )
    plan = ""
    with pytest.raises(_Undo):  # rolls the rows back
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO captcha_solutions (challenge, tenant_id, expires_at) "
                "SELECT 'idx-' || n, $1, now() + interval '10 minutes' "
                "FROM generate_series(1, 20000) n",
                tenant.id,
            )
            await conn.execute("ANALYZE captcha_solutions")
            plan = str(
                await conn.fetchval(
                    "EXPLAIN (FORMAT JSON) DELETE FROM captcha_solutions WHERE expires_at < now()"
                )
            )
            raise _Undo
    assert "Seq Scan" not in plan, plan
    assert "captcha_solutions_expires_at" in plan
