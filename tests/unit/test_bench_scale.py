"""The pure parts of `make bench-scale` (bench/_scale.py): seeded rows, statements read
from the source, EXPLAIN arguments and plans, the results table."""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import _scale  # noqa: E402
from _scale import (  # noqa: E402
    COLUMNS,
    SeedContext,
    append_row,
    literal,
    problems,
    seed_rows,
    sql_from,
    statement_sql,
    summarize,
)

CTX = SeedContext(
    tenant_id=uuid.uuid4(),
    role_id=uuid.uuid4(),
    password_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    now=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
)


def column(rows: dict, table: str, name: str) -> list:
    at = COLUMNS[table].index(name)
    return [row[at] for row in rows[table]]


def test_every_row_has_its_tables_columns() -> None:
    rows = seed_rows(CTX, 0, 200)
    for table, columns in COLUMNS.items():
        assert rows[table], table
        assert {len(row) for row in rows[table]} == {len(columns)}, table


def test_names_and_addresses_are_unique_across_batches_and_case() -> None:
    rows = [seed_rows(CTX, 0, 3000), seed_rows(CTX, 3000, 3000)]
    emails = [e.lower() for r in rows for e in column(r, "users", "email")]
    names = [n.lower() for r in rows for n in column(r, "users", "user_name")]
    assert len(set(emails)) == len(emails) == 6000
    assert len(set(names)) == len(names) == 6000
    assert not any(e.endswith("@example.com") for e in emails)  # the benchmark's domain


def test_rows_refer_to_each_other_as_a_registration_leaves_them() -> None:
    rows = seed_rows(CTX, 0, 500)
    users = set(column(rows, "users", "id"))
    assert set(column(rows, "user_roles", "user_id")) == users
    assert set(column(rows, "user_roles", "role_id")) == {CTX.role_id}
    assert set(column(rows, "activation_tokens", "user_id")) == users
    registered = [r for r in rows["registration_requests"] if r[4] == "registered"]
    assert {r[5] for r in registered} == users
    # Each request's command is in the outbox under the request id, and was processed.
    requests = set(column(rows, "registration_requests", "id"))
    assert requests <= set(column(rows, "outbox", "event_id"))
    assert requests <= set(column(rows, "processed_messages", "message_id"))
    # Activated users: approved, token used by a processed activation command.
    approved = {u[0] for u in rows["users"] if u[7]}
    used = {t[1]: t[5] for t in rows["activation_tokens"] if t[4] is not None}
    assert set(used) == approved
    assert set(used.values()) <= set(column(rows, "processed_messages", "message_id"))
    assert 0.6 < len(approved) / len(users) < 0.8


def test_outbox_bodies_are_json_cloudevents_and_all_published() -> None:
    rows = seed_rows(CTX, 0, 100)
    keys = set()
    for event_id, routing_key, body, created, published, _available in rows["outbox"]:
        event = json.loads(body)
        assert event["id"] == str(event_id)
        assert event["type"] == f"registrar.{routing_key}.v1"
        assert "sealedPassword" not in event["data"]
        assert published >= created
        keys.add(routing_key)
    assert keys == {
        "register.requested",
        "user.registered",
        "email.requested",
        "email.delivered",
        "user.activated",
    }
    for params in column(rows, "emails", "params"):
        assert json.loads(params)["activation_token_id"]


def test_seeding_is_deterministic_and_times_are_spread_in_the_past() -> None:
    first, again = seed_rows(CTX, 10, 300), seed_rows(CTX, 10, 300)
    assert first == again
    created = column(first, "users", "created_at")
    assert max(created) < CTX.now - dt.timedelta(hours=23)
    assert max(created) - min(created) > dt.timedelta(days=365)


SOURCE = '''
QUERY = """
SELECT * FROM things
 WHERE id = $1
"""
async def f(conn):
    await conn.execute("UPDATE things SET a = 1 " "WHERE id = $1")
    await conn.execute("UPDATE things SET a = 1 WHERE id = $1 AND b")
'''


def test_sql_is_read_from_the_source_file(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(SOURCE)
    assert sql_from(path, "FROM things").strip().startswith("SELECT *")
    # Implicit concatenation is one literal; an exact match wins over longer ones.
    assert sql_from(path, "UPDATE things SET a = 1 WHERE id = $1") == (
        "UPDATE things SET a = 1 WHERE id = $1"
    )
    with pytest.raises(ValueError, match="0 string literals"):
        sql_from(path, "DELETE")
    with pytest.raises(ValueError, match="2 string literals"):
        sql_from(path, "UPDATE things")


def test_every_statement_of_the_benchmark_is_found_in_the_service() -> None:
    sys.path.insert(0, str(ROOT))
    scale = pytest.importorskip("scale")
    for label, path, marker, *_ in scale.STATEMENTS:
        assert statement_sql(ROOT / path, marker), label


def test_literals() -> None:
    assert literal(None) == "NULL"
    assert literal(True) == "true"
    assert literal(100) == "100"
    assert literal(2.5) == "2.5"
    assert literal("it's") == "'it''s'"
    assert literal(b"\x01\xff") == "'\\x01ff'"
    assert literal(dt.timedelta(hours=1)) == "'3600.0 seconds'"
    assert literal([1, 2]) == """'{"1","2"}'"""
    assert literal([None, b"\x01", 'a"b,c']) == """'{NULL,"\\\\x01","a\\"b,c"}'"""
    assert literal(uuid.UUID(int=1)) == "'00000000-0000-0000-0000-000000000001'"
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert literal(moment) == "'2026-01-02T03:04:05+00:00'"


PLAN = {
    "Node Type": "LockRows",
    "Plans": [
        {
            "Node Type": "Limit",
            "Plans": [
                {
                    "Node Type": "Index Scan",
                    "Index Name": "outbox_pkey",
                    "Relation Name": "outbox",
                    "Rows Removed by Filter": 4_000_000,
                },
                {"Node Type": "Seq Scan", "Relation Name": "tenants"},
            ],
        }
    ],
}


def test_plans_are_summarized_and_their_problems_flagged() -> None:
    assert summarize(PLAN) == (
        "LockRows (Limit (Index Scan using outbox_pkey on outbox; Seq Scan on tenants))"
    )
    # tenants does not grow with users: scanning it is fine.
    assert problems(PLAN) == ["Index Scan using outbox_pkey on outbox discards 4000000 rows"]
    assert problems({"Node Type": "Seq Scan", "Relation Name": "users"}) == [
        "sequential scan on users"
    ]
    insert = {"Node Type": "ModifyTable", "Operation": "Insert", "Relation Name": "users"}
    assert summarize(insert) == "Insert on users"
    small = {"Node Type": "Index Scan", "Relation Name": "users", "Rows Removed by Filter": 3}
    assert problems(small) == []
    assert "users" in _scale.GROWING and "tenants" not in _scale.GROWING


def test_a_row_goes_to_the_end_of_its_table_and_earlier_rows_stay() -> None:
    text = "# t\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\n| c |\n| --- |\n"
    once = append_row(text, "| a |", ["3", "4"])
    assert once == "# t\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n| 3 | 4 |\n\n| c |\n| --- |\n"
    twice = append_row(once, "| c |", ["x"])
    assert twice.endswith("| c |\n| --- |\n| x |\n")
    with pytest.raises(ValueError):
        append_row(text, "| z |", ["1"])
