"""A tenant's roles (Baasic's `lookups/roles`, SPEC §11). Every tenant starts with Admin,
Staff and User (numbers 1-3, Blynk's roleIds; `User` is what registration gives): they
may get another description but keep their names and cannot be deleted. A new role
takes the next number of its tenant; a role that users hold cannot be deleted."""

from __future__ import annotations

import uuid

import asyncpg

from service.errors import Conflict, NotFound
from service.paging import PageRequest, like_pattern

PREDEFINED = 3  # roles numbered up to this are every tenant's own (service.tenants)
SORTS = {"name": "lower(name)", "description": "lower(description)",
         "dateCreated": "created_at", "dateUpdated": "updated_at"}  # fmt: skip
DEFAULT_SORT = "name"
COLUMNS = "id, name, description, number, created_at, updated_at"


class RoleTaken(Conflict):
    slug, title = "role-taken", "The tenant has a role of that name already"


class RoleInUse(Conflict):
    slug, title = "role-in-use", "Users hold this role"


class RolePredefined(Conflict):
    slug, title = "role-predefined", "Admin, Staff and User keep their names and stay"


async def list_roles(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, request: PageRequest
) -> tuple[list[asyncpg.Record], int]:
    """One page of the tenant's roles (searched in name and description) and how many
    match in all. A tenant has few roles: counted and sorted as they are."""
    where, args = "tenant_id = $1", [tenant_id]
    if request.search:
        where += " AND (name ILIKE $2 OR description ILIKE $2)"
        args.append(like_pattern(request.search))
    direction = "DESC" if request.descending else "ASC"
    n = len(args) + 1
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(f"SELECT count(*) FROM roles WHERE {where}", *args)
        found = await conn.fetch(
            f"SELECT {COLUMNS} FROM roles WHERE {where} "
            f"ORDER BY {SORTS[request.sort]} {direction}, id {direction} "
            f"LIMIT ${n} OFFSET ${n + 1}",
            *args,
            request.rpp,
            (request.page - 1) * request.rpp,
        )
    return list(found), total


async def get_role(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: uuid.UUID, role_id: uuid.UUID
) -> asyncpg.Record:
    """The role, or 404."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM roles WHERE id = $1 AND tenant_id = $2", role_id, tenant_id
    )
    if row is None:
        raise NotFound("no such role")
    return row


async def create_role(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, name: str, description: str
) -> asyncpg.Record:
    """A new role numbered after the tenant's others; 409 when the name is taken
    (case-insensitively)."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            # Role creations of one tenant take numbers one at a time.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('roles:' || $1::uuid::text, 0))",
                tenant_id,
            )
            return await conn.fetchrow(
                f"INSERT INTO roles (id, tenant_id, name, description, number) "
                f"SELECT $1, $2, $3, $4, COALESCE(max(number), 0) + 1 FROM roles "
                f"WHERE tenant_id = $2 RETURNING {COLUMNS}",
                uuid.uuid4(),
                tenant_id,
                name,
                description,
            )
    except asyncpg.UniqueViolationError:
        raise RoleTaken(f"a role named {name!r} exists") from None


async def update_role(
    pool: asyncpg.Pool,
    *,
    tenant_id: uuid.UUID,
    role_id: uuid.UUID,
    name: str | None,
    description: str | None,
) -> None:
    """Rename or describe a role; 404 no such role, 409 name taken or a predefined role
    renamed."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            role = await get_role(conn, tenant_id=tenant_id, role_id=role_id)
            renamed = name is not None and name != role["name"]
            if renamed and role["number"] <= PREDEFINED:
                raise RolePredefined(f"{role['name']} cannot be renamed")
            if renamed or (description is not None and description != role["description"]):
                await conn.execute(
                    "UPDATE roles SET name = COALESCE($2, name), "
                    "description = COALESCE($3, description), updated_at = now() WHERE id = $1",
                    role_id,
                    name,
                    description,
                )
    except asyncpg.UniqueViolationError:
        raise RoleTaken(f"a role named {name!r} exists") from None


async def delete_role(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, role_id: uuid.UUID) -> None:
    """Delete a role nobody holds; 404 no such role, 409 held or predefined."""
    async with pool.acquire() as conn, conn.transaction():
        # Locked first: an assignment of it (a foreign key check) now waits for us, so
        # none can slip in between the check and the deletion.
        role = await conn.fetchrow(
            "SELECT name, number FROM roles WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
            role_id,
            tenant_id,
        )
        if role is None:
            raise NotFound("no such role")
        if role["number"] <= PREDEFINED:
            raise RolePredefined(f"{role['name']} cannot be deleted")
        # Planned for this very role (here and in the deletion's cascade): a generic plan
        # takes any role for a common one (a tenant has few, and most users hold `User`)
        # and scans user_roles to prove that nobody holds it (82 ms at a million users,
        # make bench-scale).
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        held = await conn.fetchval(
            "SELECT EXISTS (SELECT FROM user_roles WHERE role_id = $1)", role_id
        )
        if held:
            raise RoleInUse(f"users hold the role {role['name']}")
        await conn.execute("DELETE FROM roles WHERE id = $1", role_id)
