"""How far the schema is from distributing by tenant on Citus (docs/distribution.md).

Citus shards a distributed table by one column (here `tenant_id`) and can only enforce a
primary key or unique constraint that includes it, and a foreign key between two
distributed tables only if it joins them on it; a statement reaches one shard only if
every distributed table it reads is filtered on it. These tests read the real schema
(pg_catalog of the migrated test database) and the real statements (every SQL literal of
the hot modules, planned by PostgreSQL) and compare what they find with the chapter's
classification:

* every table is classified (distributed, reference, coordinator-local); a new table
  fails until somebody decides where it goes;
* every place where today's schema or a hot statement does not fit is listed below with
  its reason, exactly: a new misfit fails, and so does a listed one that is gone (then
  the list and the chapter are updated together).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]

# --- the classification (docs/distribution.md, "Tables") ----------------------------------

# Sharded by tenant_id, co-located: one tenant's rows of all of them on one node.
DISTRIBUTED = {
    "users",
    "roles",
    "user_roles",
    "user_counts",
    "registration_requests",
    "activation_tokens",
    "password_recovery_tokens",
    "account_requests",
    "user_sessions",
    "captcha_solutions",
    "emails",
    "invitations",
    "invite_requests",
    "outbox",
    "processed_messages",
    "webhook_endpoints",
    "webhook_deliveries",
}

# Copied to every node: small, read on every request without a tenant in hand (the API
# key and bearer token lookups) or the same for every tenant.
REFERENCE = {
    "tenants": "looked up by api_key_hash before the tenant is known; one row per tenant",
    "access_tokens": "looked up by token_hash before the tenant is known; a few per tenant",
    "webhook_event_types": "the list of public routing keys, the same for every tenant",
}

# On the coordinator only.
LOCAL = {
    "schema_migrations": "the migration runner's bookkeeping; never joined with tenant data",
}

# Where today's schema does not fit DISTRIBUTED (the chapter's "What has to change"):
# every primary key / unique constraint without tenant_id, every foreign key between
# distributed tables that does not join on it, every such table without the column.
SCHEMA_MISFITS = {
    # Every table keys its rows by a global id: the key becomes (tenant_id, id).
    "users: primary key users_pkey (id)",
    "roles: primary key roles_pkey (id)",
    "registration_requests: primary key registration_requests_pkey (id)",
    "activation_tokens: primary key activation_tokens_pkey (id)",
    "password_recovery_tokens: primary key password_recovery_tokens_pkey (id)",
    "account_requests: primary key account_requests_pkey (id)",
    "user_sessions: primary key user_sessions_pkey (id)",
    "emails: primary key emails_pkey (id)",
    "invitations: primary key invitations_pkey (id)",
    "invite_requests: primary key invite_requests_pkey (id)",
    "outbox: primary key outbox_pkey (id)",
    "webhook_endpoints: primary key webhook_endpoints_pkey (id)",
    "webhook_deliveries: primary key webhook_deliveries_pkey (id)",
    # A captcha challenge is unique by itself (it is signed for one tenant).
    "captcha_solutions: primary key captcha_solutions_pkey (challenge)",
    # Blynk's user number is unique across the installation (a global sequence).
    "users: unique users_number (number)",
    # Secrets hashed with 256 random bits: unique in practice; looked up without a tenant.
    "activation_tokens: unique activation_tokens_token_hash_key (token_hash)",
    "password_recovery_tokens: unique password_recovery_tokens_token_hash_key (token_hash)",
    "user_sessions: unique user_sessions_token_hash_key (token_hash)",
    "invitations: unique invitations_token_hash_key (token_hash)",
    # The InviteRequested id that created an invitation.
    "invitations: unique invitations_request_id_key (request_id)",
    # The outbox is one queue for the whole installation.
    "outbox: unique outbox_event_id_key (event_id)",
    "outbox: no tenant_id column",
    # Message ids are unique per consumer, whichever tenant they were for.
    "processed_messages: primary key processed_messages_pkey (consumer, message_id)",
    "processed_messages: no tenant_id column",
    # Rows that hang off a user by user_id alone.
    "user_roles: no tenant_id column",
    "user_roles: primary key user_roles_pkey (user_id, role_id)",
    "user_roles: foreign key user_roles_user_id_fkey (user_id) -> users (id)",
    "user_roles: foreign key user_roles_role_id_fkey (role_id) -> roles (id)",
    "activation_tokens: no tenant_id column",
    "activation_tokens: foreign key activation_tokens_user_id_fkey (user_id) -> users (id)",
    "password_recovery_tokens: no tenant_id column",
    "password_recovery_tokens: foreign key password_recovery_tokens_user_id_fkey "
    "(user_id) -> users (id)",
    "registration_requests: foreign key registration_requests_user_id_fkey (user_id) -> users (id)",
    "account_requests: foreign key account_requests_user_id_fkey (user_id) -> users (id)",
    "user_sessions: foreign key user_sessions_user_id_fkey (user_id) -> users (id)",
    "invitations: foreign key invitations_role_id_fkey (role_id) -> roles (id)",
    "invitations: foreign key invitations_user_id_fkey (user_id) -> users (id)",
    "webhook_deliveries: no tenant_id column",
    "webhook_deliveries: unique webhook_deliveries_endpoint_id_event_id_key "
    "(endpoint_id, event_id)",
    "webhook_deliveries: foreign key webhook_deliveries_endpoint_id_fkey "
    "(endpoint_id) -> webhook_endpoints (id)",
    "webhook_deliveries: foreign key webhook_deliveries_outbox_id_fkey (outbox_id) -> outbox (id)",
}

# --- the hot statements (docs/distribution.md, "Hot statements") ---------------------------

# The modules on the paths that run per registration, activation, login, email, event or
# back-office page: every complete SQL statement written in them as a literal.
HOT_MODULES = (
    "service/intake.py",  # the door: registration request + command in one statement
    "service/commands.py",  # the gateway's safety-net copy of each command
    "service/outbox.py",
    "service/registrations.py",  # the status resource
    "service/captcha.py",
    "service/tenants.py",  # API key and bearer token lookups
    "service/logins.py",
    "service/sessions.py",
    "service/single_use.py",  # activation and recovery token lookups
    "service/user_listing.py",  # the back office's user pages
    "workers/dedup.py",
    "workers/registration.py",
    "workers/activation.py",
    "workers/mailer.py",
    "workers/outbox.py",  # the relay
    "workers/webhooks.py",
)

# Hot statements that would reach every shard, or write rows that have no tenant_id to
# be routed by: statement (module, then where it is written) -> what would have to change.
OUTBOX = "outbox has no tenant_id: add it (from the event), key (tenant_id, id)"
BY_ID = "addressed by id alone, the tenant known to the caller: add AND tenant_id = $n"
NO_TENANT_COLUMN = "a table without tenant_id: add the column, then filter on it"
MULTI_SHARD = {
    "service/intake.py RECORD_BATCH": "one statement for the requests of several tenants "
    "(group the batch by tenant); the outbox; everybody's expired captchas",
    "service/intake.py MARK_PUBLISHED": OUTBOX,
    "service/commands.py record_command()": OUTBOX,
    "service/commands.py publish_recorded()": OUTBOX,
    "service/commands.py forget_command()": OUTBOX,
    "service/outbox.py INSERT": OUTBOX,
    "workers/outbox.py publish_batch()": "the relay scans every tenant's rows: one relay "
    "per shard (or node), FOR UPDATE SKIP LOCKED is single-shard only",
    "workers/outbox.py publish_batch() #2": OUTBOX,
    "workers/outbox.py _record_failures()": OUTBOX,
    "service/captcha.py consume_solution() #2": "deletes every tenant's expired solutions: "
    "per tenant, or in `registrar prune`",
    "service/captcha.py release_solution()": "keyed by challenge alone: key "
    "(tenant_id, challenge) and filter by tenant",
    "service/registrations.py delete_pending()": BY_ID,
    "workers/registration.py register_user()": BY_ID,
    "workers/registration.py _reject()": BY_ID,
    "workers/registration.py record_failure()": BY_ID,
    "workers/registration.py FIRST_AND_LOCK": "processed_messages has no tenant_id; the "
    "request by id alone",
    "workers/registration.py INSERT_USER": "user_roles has no tenant_id; roles joined "
    "by id alone (add ro.tenant_id = $2)",
    "workers/registration.py DECIDE": "activation_tokens and outbox have no tenant_id; "
    "the request by id alone",
    "workers/dedup.py first_delivery()": NO_TENANT_COLUMN,
    "service/logins.py login()": BY_ID,
    "service/logins.py COUNT_FAILURE": BY_ID,
    "service/logins.py LOCK": BY_ID,
    "service/logins.py _upgrade_hash()": BY_ID,
    "service/sessions.py USE_SESSION": "the session is found by tenant, its user by id "
    "alone (add u.tenant_id = s.tenant_id)",
    "service/sessions.py record_sign_in()": BY_ID,
    "service/sessions.py refresh_session()": BY_ID,
    "service/sessions.py revoke_all()": BY_ID,
    "service/single_use.py ACTIVATION.find_sql": NO_TENANT_COLUMN,
    "service/single_use.py ACTIVATION.used_by_sql": NO_TENANT_COLUMN,
    "service/single_use.py RECOVERY.find_sql": NO_TENANT_COLUMN,
    "service/single_use.py RECOVERY.used_by_sql": NO_TENANT_COLUMN,
    "workers/activation.py INSERT_ACTIVATION_ROW": NO_TENANT_COLUMN,
    "workers/activation.py activate_user()": NO_TENANT_COLUMN,
    "workers/activation.py resend_activation() #2": NO_TENANT_COLUMN,
    "workers/activation.py resend_activation() #3": NO_TENANT_COLUMN,
    "workers/mailer.py CLAIM": "the row is found by tenant, but updated by id alone "
    "(add e.tenant_id = $2)",
    "workers/mailer.py RECORD_SENT": "emails by id alone; the outbox",
    "workers/mailer.py release()": BY_ID,
    "service/user_listing.py ROWS": "a page's users by id alone (= ANY($1)): add tenant_id = $n",
    "service/user_listing.py ROLES": "user_roles has no tenant_id; roles joined by id",
    "workers/webhooks.py LOCK_ENDPOINTS": "the dispatcher scans every tenant's endpoints: "
    "one dispatcher per shard, or by tenant",
    "workers/webhooks.py NEXT_DUE": "scans every tenant's endpoints and deliveries",
    "workers/webhooks.py CLAIM": "webhook_deliveries and outbox have no tenant_id",
    "workers/webhooks.py RECORD_DELIVERED": "webhook_deliveries has no tenant_id",
    "workers/webhooks.py RECORD_GONE": "webhook_deliveries has no tenant_id",
    "workers/webhooks.py RECORD_FAILED": "webhook_deliveries has no tenant_id",
}

# --- reading the schema ---------------------------------------------------------------------

TABLES = """
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
"""

# Primary keys, unique constraints and unique indexes: their key columns (not INCLUDE).
UNIQUE_KEYS = """
SELECT c.relname AS table_name, i.relname AS index_name, x.indisprimary AS primary_key,
       array(SELECT coalesce(a.attname, 'expr') FROM unnest((x.indkey::int2[])[0:x.indnkeyatts - 1])
                    WITH ORDINALITY AS k(attnum, n)
               LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              ORDER BY k.n) AS columns
  FROM pg_index x
  JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_class i ON i.oid = x.indexrelid
 WHERE x.indisunique AND c.relnamespace = 'public'::regnamespace
"""

FOREIGN_KEYS = """
SELECT c.conname, c.conrelid::regclass::text AS table_name,
       c.confrelid::regclass::text AS referenced,
       array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
              ORDER BY k.n) AS columns,
       array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
              ORDER BY k.n) AS referenced_columns
  FROM pg_constraint c
 WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
"""

TENANT_COLUMNS = """
SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'public'::regnamespace AND a.attname = 'tenant_id' AND NOT a.attisdropped
"""


async def schema_misfits(pool: asyncpg.Pool) -> set[str]:
    """What keeps each DISTRIBUTED table from being distributed by tenant_id today."""
    found = set()
    with_tenant = {r["relname"] for r in await pool.fetch(TENANT_COLUMNS)}
    found |= {f"{table}: no tenant_id column" for table in DISTRIBUTED - with_tenant}
    for key in await pool.fetch(UNIQUE_KEYS):
        if key["table_name"] in DISTRIBUTED and "tenant_id" not in key["columns"]:
            kind = "primary key" if key["primary_key"] else "unique"
            columns = ", ".join(key["columns"])
            found.add(f"{key['table_name']}: {kind} {key['index_name']} ({columns})")
    for fk in await pool.fetch(FOREIGN_KEYS):
        if fk["table_name"] in DISTRIBUTED and fk["referenced"] in DISTRIBUTED:
            pairs = list(zip(fk["columns"], fk["referenced_columns"], strict=True))
            if ("tenant_id", "tenant_id") not in pairs:
                found.add(
                    f"{fk['table_name']}: foreign key {fk['conname']} "
                    f"({', '.join(fk['columns'])}) -> {fk['referenced']} "
                    f"({', '.join(fk['referenced_columns'])})"
                )
    return found


async def test_every_table_is_classified(pool: asyncpg.Pool) -> None:
    tables = {r["relname"] for r in await pool.fetch(TABLES)}
    classified = DISTRIBUTED | set(REFERENCE) | set(LOCAL)
    assert tables - classified == set(), "classify the new table in docs/distribution.md"
    assert classified - tables == set(), "a classified table no longer exists"
    assert not DISTRIBUTED & set(REFERENCE) and not DISTRIBUTED & set(LOCAL)


async def test_distributed_tables_keys_and_foreign_keys_carry_tenant_id(
    pool: asyncpg.Pool,
) -> None:
    found = await schema_misfits(pool)
    assert found - SCHEMA_MISFITS == set(), "a key without tenant_id on a distributed table"
    assert SCHEMA_MISFITS - found == set(), "fixed: drop it from SCHEMA_MISFITS and the doc"


async def test_reference_tables_refer_only_to_reference_tables(pool: asyncpg.Pool) -> None:
    """Citus cannot keep a foreign key from a reference table to a distributed one."""
    wrong = [
        f"{fk['table_name']}.{fk['conname']} -> {fk['referenced']}"
        for fk in await pool.fetch(FOREIGN_KEYS)
        if fk["table_name"] in REFERENCE and fk["referenced"] not in REFERENCE
    ]
    assert wrong == []


# --- reading the statements -----------------------------------------------------------------

STATEMENT = re.compile(r"\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\s")
# Every condition EXPLAIN VERBOSE prints, with columns qualified by their table's alias.
CONDITIONS = (
    "Index Cond",
    "Recheck Cond",
    "Filter",
    "Join Filter",
    "Hash Cond",
    "Merge Cond",
    "TID Cond",
    "One-Time Filter",
)


def sql_literals(module: str) -> dict[str, str]:
    """Every string literal of a module that starts like a statement (not the constant
    parts of an f-string: a statement built at run time is not planned here), by where it
    is written: `NAME` of a module-level assignment (`NAME.keyword` in a call there), else
    `function()`, numbered `#2`, `#3`... when a function holds several."""
    tree = ast.parse((ROOT / module).read_text())
    found: dict[str, str] = {}

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.JoinedStr):
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            where = f"{node.name}()"
        elif isinstance(node, ast.Assign) and where == "" and isinstance(node.targets[0], ast.Name):
            where = node.targets[0].id
        elif isinstance(node, ast.keyword) and node.arg and "()" not in where:
            where = f"{where}.{node.arg}"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and STATEMENT.match(node.value)
        ):
            name, n = where, 1
            while name in found:
                n += 1
                name = f"{where} #{n}"
            found[name] = node.value
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(tree, "")
    return {f"{module} {where}": sql for where, sql in found.items()}


def first_plan(explained: str | list) -> dict:
    """EXPLAIN (FORMAT JSON)'s one plan, whether the pool's codec decoded it or not."""
    return (json.loads(explained) if isinstance(explained, str) else explained)[0]


def plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def unrouted_tables(plan: dict, with_tenant: set[str]) -> set[str]:
    """The distributed tables a planned statement touches without a tenant_id condition:
    a scan whose alias's tenant_id no condition of the plan mentions, or a write to a
    table that has no tenant_id to route the row by."""
    nodes = list(plan_nodes(plan["Plan"]))
    conditions = " ".join(str(n[name]) for n in nodes for name in CONDITIONS if name in n)
    unrouted = set()
    for node in nodes:
        table = node.get("Relation Name")
        if table not in DISTRIBUTED:
            continue
        if node["Node Type"] == "ModifyTable":
            if table not in with_tenant:
                unrouted.add(table)
            continue  # an UPDATE's or DELETE's rows are found by the scan below it
        alias = re.escape(node.get("Alias", table))
        if not re.search(rf"\b{alias}\.tenant_id\b", conditions):
            unrouted.add(table)
    return unrouted


@pytest.fixture(scope="module")
async def planned_statements(pool: asyncpg.Pool) -> dict[str, set[str]]:
    """key -> the distributed tables it touches without tenant_id, for every hot statement,
    from PostgreSQL's generic plan of it (EXPLAIN VERBOSE, parameters unknown)."""
    out: dict[str, set[str]] = {}
    async with pool.acquire() as conn:
        with_tenant = {r["relname"] for r in await conn.fetch(TENANT_COLUMNS)}
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            for module in HOT_MODULES:
                for name, sql in sql_literals(module).items():
                    await conn.execute(f"PREPARE hot AS {sql}")
                    try:
                        count = await conn.fetchval(
                            "SELECT cardinality(parameter_types) FROM pg_prepared_statements "
                            "WHERE name = 'hot'"
                        )
                        arguments = f"({', '.join(['NULL'] * count)})" if count else ""
                        plan = await conn.fetchval(
                            f"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE hot{arguments}"
                        )
                    finally:
                        await conn.execute("DEALLOCATE hot")
                    out[name] = unrouted_tables(first_plan(plan), with_tenant)
        finally:
            await conn.execute("RESET plan_cache_mode")
    return out


async def test_hot_statements_are_found(planned_statements: dict[str, set[str]]) -> None:
    # The registration path alone has a dozen; an empty harvest would pass the next test.
    assert len(planned_statements) > 60
    assert "workers/registration.py INSERT_USER" in planned_statements


async def test_hot_statements_filter_every_distributed_table_by_tenant(
    planned_statements: dict[str, set[str]],
) -> None:
    multi_shard = {k for k, tables in planned_statements.items() if tables}
    new = {k: sorted(planned_statements[k]) for k in multi_shard - set(MULTI_SHARD)}
    assert new == {}, "filter by tenant_id, or list it in MULTI_SHARD and the doc"
    fixed = set(MULTI_SHARD) - multi_shard
    assert fixed == set(), "fixed (or renamed): drop it from MULTI_SHARD and the doc"


async def test_the_check_sees_a_missing_tenant_filter(pool: asyncpg.Pool) -> None:
    """The plan reading itself: a lookup by id alone is flagged, the same with tenant_id is
    not, and a join is judged per table."""
    async with pool.acquire() as conn:

        async def unrouted(sql: str) -> set[str]:
            plan = await conn.fetchval(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql}")
            return unrouted_tables(first_plan(plan), {"users", "roles"})

        nobody = "'00000000-0000-0000-0000-000000000000'"
        assert await unrouted(f"SELECT * FROM users WHERE id = {nobody}") == {"users"}
        assert (
            await unrouted(f"SELECT * FROM users WHERE id = {nobody} AND tenant_id = {nobody}")
            == set()
        )
        assert await unrouted(
            f"SELECT * FROM users u JOIN roles r ON r.tenant_id = u.tenant_id "
            f"JOIN user_roles ur ON ur.role_id = r.id WHERE u.tenant_id = {nobody}"
        ) == {"user_roles"}
