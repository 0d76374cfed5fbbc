"""Every foreign key has an index led by its columns (else a cascading delete or a join
by that key scans the whole referencing table, which grows to millions of rows)."""

from __future__ import annotations

import asyncpg

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
