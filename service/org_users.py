"""Organization users as Blynk shows them (SPEC §11): integer ids, one role, a status.

A user's Blynk `id` is `users.number`, the organization's `orgId` is `tenants.number`
(migration 0015) and `roleId` is the number of the user's role in its tenant (Admin 1,
Staff 2, User 3, others from 4). A user with several roles (possible through the
Baasic-shaped API) shows the lowest number, the widest role.

Status, from our own data, first rule that holds:

* `Suspended` — locked by an administrator, or a lock-out after failed logins is running;
* `Pending` — not approved (not yet activated) or never logged in;
* `Inactive` — the last login is more than 30 days old;
* `Active` — otherwise.
"""

from __future__ import annotations

import uuid

import asyncpg

from schemas.blynk import OrgUser, SearchQuery, UsersPage, UserSummary
from schemas.events import UserUpdated
from service.errors import NotFound
from service.outbox import add_event

INACTIVE_AFTER = "30 days"
STATUS = f"""CASE
    WHEN u.is_locked_out OR u.locked_until > now() THEN 'Suspended'
    WHEN NOT u.is_approved OR u.last_login_at IS NULL THEN 'Pending'
    WHEN u.last_login_at < now() - interval '{INACTIVE_AFTER}' THEN 'Inactive'
    ELSE 'Active'
END"""
ROLE = """(SELECT min(r.number) FROM user_roles ur JOIN roles r ON r.id = ur.role_id
          WHERE ur.user_id = u.id)"""


def _epoch_ms(column: str) -> str:
    return f"floor(extract(epoch FROM {column}) * 1000)::bigint"


SUMMARY = f"""u.number AS id, u.name, u.email, {ROLE} AS role_id, t.number AS org_id,
       {STATUS} AS status"""
FULL = f"""{SUMMARY}, u.locale, {_epoch_ms("u.created_at")} AS registered_at,
       {_epoch_ms("u.last_login_at")} AS last_logged_at,
       {_epoch_ms("u.updated_at")} AS last_modified_ts"""
WITH_ORG = "users u JOIN tenants t ON t.id = u.tenant_id"
MATCHES = "AND (u.name ILIKE $2 OR u.email ILIKE $2)"
# The users' roles for sorting a whole organization by role: one grouped join instead of
# a subquery per user (PostgreSQL leaves the join out when the sort does not use it).
ROLES_JOIN = """LEFT JOIN (SELECT ur.user_id, min(r.number) AS number
                     FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                    WHERE r.tenant_id = $1 GROUP BY ur.user_id) ro ON ro.user_id = u.id"""

# Search's sort fields (schemas.blynk.SORT_BY) -> SQL; the user id breaks ties, so a
# page boundary never falls between equal rows differently from one request to the next.
# Users without a role sort as PostgreSQL sorts NULL: after the others in ascending order.
ORDER = {
    "id": "u.number",
    "name": "lower(u.name)",
    "email": "lower(u.email)",
    "status": STATUS,
    "roleId": "ro.number",
    "registeredAt": "u.created_at",
}


class UnknownUser(NotFound):
    slug, title = "user-not-found", "No such user in this organization"

    @classmethod
    def numbered(cls, user_id: int) -> UnknownUser:
        # Blynk's own message for this case, word for word.
        return cls(
            f"User with identifier {user_id} is not found or belong to another organization."
        )


class UnknownRole(NotFound):
    slug, title = "role-not-found", "No such role in this organization"


def _pattern(query: str) -> str:
    """An ILIKE pattern matching `query` anywhere, its wildcards taken literally."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def users_page(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, search: SearchQuery) -> UsersPage:
    """One 0-based page of the tenant's users whose name or email contains the query
    (case-insensitively), in the order asked for, and how many there are in all."""
    query, sort = search.query, search.sort_field
    direction = search.sort_order  # ASC or DESC (validated), like every SQL piece here
    args, matches = ([tenant_id, _pattern(query)], MATCHES) if query else ([tenant_id], "")
    # The page's ids first, its columns after: a deep page does not compute the roles and
    # statuses of every user it skips. SQL from ORDER, never from the caller's text.
    page_sql = f"""
        SELECT {SUMMARY}
          FROM (SELECT u.id, {ORDER[sort]} AS sort_key FROM users u {ROLES_JOIN}
                 WHERE u.tenant_id = $1 {matches}
                 ORDER BY sort_key {direction}, u.number {direction}
                 LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}) p
          JOIN {WITH_ORG} ON u.id = p.id
         ORDER BY p.sort_key {direction}, u.number {direction}"""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        total = await conn.fetchval(
            f"SELECT count(*) FROM users u WHERE u.tenant_id = $1 {matches}", *args
        )
        rows = await conn.fetch(page_sql, *args, search.size, search.page * search.size)
    return UsersPage(content=[UserSummary(**row) for row in rows], total_elements=total)


async def org_user(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: uuid.UUID, user_id: int
) -> OrgUser:
    """The full user with this Blynk id in the tenant, or UnknownUser."""
    row = await conn.fetchrow(
        f"SELECT {FULL} FROM {WITH_ORG} WHERE u.tenant_id = $1 AND u.number = $2",
        tenant_id,
        user_id,
    )
    if row is None:
        raise UnknownUser.numbered(user_id)
    return OrgUser(**row)


# The user's roles become exactly this one; `updated_at` (lastModifiedTs) moves only if
# they changed. Returns that time, or no row when the role was the user's only role.
REPLACE_ROLES = """
WITH gone AS (
    DELETE FROM user_roles WHERE user_id = $1 AND role_id <> $2 RETURNING 1
), added AS (
    INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1
)
UPDATE users SET updated_at = now()
 WHERE id = $1 AND (EXISTS (SELECT FROM gone) OR EXISTS (SELECT FROM added))
RETURNING updated_at
"""


async def change_role(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, user_id: int, role_id: int
) -> OrgUser:
    """Give the user (Blynk id) this role (Blynk roleId) instead of the ones it has; a
    change publishes `user.updated` through the outbox in the same transaction.
    UnknownUser or UnknownRole when either is not the tenant's."""
    async with pool.acquire() as conn, conn.transaction():
        user = await conn.fetchval(
            "SELECT id FROM users WHERE tenant_id = $1 AND number = $2 FOR UPDATE",
            tenant_id,
            user_id,
        )
        if user is None:
            raise UnknownUser.numbered(user_id)
        # KEY SHARE: a concurrent delete of the role waits for this transaction.
        role = await conn.fetchval(
            "SELECT id FROM roles WHERE tenant_id = $1 AND number = $2 FOR KEY SHARE",
            tenant_id,
            role_id,
        )
        if role is None:
            raise UnknownRole("Role is not found.")  # Blynk's message
        changed_at = await conn.fetchval(REPLACE_ROLES, user, role)
        if changed_at is not None:
            await add_event(
                conn,
                UserUpdated(user_id=user, tenant_id=tenant_id, at=changed_at, changed=["roles"]),
                subject=str(user),
            )
        return await org_user(conn, tenant_id=tenant_id, user_id=user_id)


async def is_member(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, email: str) -> bool:
    """Whether a user of the tenant has this address (case-insensitively)."""
    return bool(
        await pool.fetchval(
            "SELECT true FROM users WHERE tenant_id = $1 AND lower(email) = lower($2)",
            tenant_id,
            email,
        )
    )
