"""GET /{apiKey}/users: a tenant's users page by page, sorted, filtered and searched.

Built to stay fast on a tenant of a million users (migration 0014; `make bench-scale`
EXPLAINs these statements at that size):

* totalRecords without a search is read from the per-tenant counters (user_counts),
  not counted; with a search it counts the matches through the trigram index.
* A page picks its ids with an index-only scan of the sort order's index and skips its
  offset there; only its own rows are then read. A page past the middle is read from
  the other end (the last page skips nothing), so no page skips more than half.
* The page and its total are read in one snapshot (a repeatable-read transaction).
"""

from __future__ import annotations

import uuid
from collections import defaultdict

import asyncpg

from schemas.http import User
from service.paging import PageRequest, Window, like_pattern, window
from service.users import user_from_row

# Sort fields (wire names) -> the index order they read (migration 0014). userName and
# email are unique per tenant; the dates take the id as a tie-breaker.
SORTS: dict[str, tuple[str, ...]] = {
    "userName": ("lower(u.user_name)",),
    "email": ("lower(u.email)",),
    "dateCreated": ("u.created_at", "u.id"),
    "dateUpdated": ("u.updated_at", "u.id"),
}
DEFAULT_SORT = "userName"
FLAGS = {"isApproved": "u.is_approved", "isLocked": "u.is_locked_out"}
# The expression of the trigram index users_search: the fields joined by U+001F, which
# a search phrase may not contain (service.paging), so a match never spans two fields.
SEARCHED = "(u.user_name || E'\\x1f' || u.email || E'\\x1f' || u.name)"

COUNTS = """
SELECT COALESCE(sum(users), 0) AS users, COALESCE(sum(approved), 0) AS approved,
       COALESCE(sum(locked), 0) AS locked, COALESCE(sum(approved_locked), 0) AS approved_locked
  FROM user_counts WHERE tenant_id = $1
"""

ROWS = """
SELECT id, user_name, email, name, created_at, updated_at, is_approved, is_locked_out,
       dashboard_settings, locale
  FROM users WHERE id = ANY($1::uuid[])
"""

ROLES = """
SELECT ur.user_id, ro.id, ro.name, ro.description
  FROM user_roles ur JOIN roles ro ON ro.id = ur.role_id
 WHERE ur.user_id = ANY($1::uuid[])
 ORDER BY ro.name
"""


def _conditions(request: PageRequest) -> tuple[str, list[object]]:
    """The WHERE clause after the tenant ($1), and its arguments ($2 on). A filter is
    written out (`u.is_locked_out`, `NOT u.is_locked_out`), not a parameter: the planner
    then knows how many rows pass and may use the partial indexes of locked users."""
    clauses, args = ["u.tenant_id = $1"], []
    for name, value in sorted(request.filters.items()):
        clauses.append(FLAGS[name] if value else f"NOT {FLAGS[name]}")
    if request.search:
        clauses.append(f"{SEARCHED} ILIKE ${len(args) + 2}")
        args.append(like_pattern(request.search))
    return " AND ".join(clauses), args


def page_sql(request: PageRequest, *, from_end: bool = False) -> str:
    """The ids of one page (arguments: tenant, the conditions', limit, offset)."""
    where, args = _conditions(request)
    descending = request.descending != from_end
    order = ", ".join(f"{key} {'DESC' if descending else 'ASC'}" for key in SORTS[request.sort])
    n = len(args) + 2
    return f"SELECT u.id FROM users u WHERE {where} ORDER BY {order} LIMIT ${n} OFFSET ${n + 1}"


def count_sql(request: PageRequest) -> str:
    """Count the matches of a search (arguments: tenant, the conditions')."""
    where, _ = _conditions(request)
    return f"SELECT count(*) FROM users u WHERE {where}"


def counted(counts: asyncpg.Record | dict, filters: dict[str, bool]) -> int:
    """How many users pass the isApproved / isLocked filters, from the tenant's counters:
    the users of each (approved, locked) cell, summed over the cells the filters keep."""
    both = counts["approved_locked"]
    cells = {
        (True, True): both,
        (True, False): counts["approved"] - both,
        (False, True): counts["locked"] - both,
        (False, False): counts["users"] - counts["approved"] - counts["locked"] + both,
    }
    approved, locked = filters.get("isApproved"), filters.get("isLocked")
    return sum(
        n for (a, lock), n in cells.items() if approved in (None, a) and locked in (None, lock)
    )


async def _total(conn: asyncpg.Connection, tenant_id: uuid.UUID, request: PageRequest) -> int:
    if request.search:
        _, args = _conditions(request)
        return await conn.fetchval(count_sql(request), tenant_id, *args)
    counts = await conn.fetchrow(COUNTS, tenant_id)
    return int(counted(counts, dict(request.filters)))


async def _page_ids(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, request: PageRequest, rows: Window
) -> list[uuid.UUID]:
    _, args = _conditions(request)
    sql = page_sql(request, from_end=rows.from_end)
    ids = [r["id"] for r in await conn.fetch(sql, tenant_id, *args, rows.limit, rows.offset)]
    return ids[::-1] if rows.from_end else ids


async def list_users(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, request: PageRequest, links_of
) -> tuple[list[User], int]:
    """One page of the tenant's users and how many match in all. `links_of(user_id)`
    gives each user's HAL links."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await _total(conn, tenant_id, request)
        rows = window(request, total)
        if rows is None:
            return [], total
        ids = await _page_ids(conn, tenant_id, request, rows)
        found = {r["id"]: r for r in await conn.fetch(ROWS, ids)}
        roles: dict[uuid.UUID, list[dict]] = defaultdict(list)
        for r in await conn.fetch(ROLES, ids):
            roles[r["user_id"]].append(
                {"id": r["id"], "name": r["name"], "description": r["description"]}
            )
    return [
        user_from_row(found[i], roles=roles[i], links=links_of(i)) for i in ids if i in found
    ], total
