"""Reading users in their public (Baasic) representation."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from schemas.http import Link, Role, User

USER_QUERY = """
SELECT u.*,
       (SELECT r.id FROM registration_requests r WHERE r.user_id = u.id LIMIT 1) AS request_id,
       COALESCE(
           (SELECT json_agg(json_build_object('id', ro.id, 'name', ro.name,
                                              'description', ro.description) ORDER BY ro.name)
              FROM user_roles ur JOIN roles ro ON ro.id = ur.role_id
             WHERE ur.user_id = u.id),
           '[]'::json) AS roles
  FROM users u
 WHERE u.id = $1 AND u.tenant_id = $2
"""


# A user addressed in a path by userName or id (Baasic's SDKs use both), in one tenant;
# the userName wins (a userName may look like an id). `id = $3` with the id parsed here,
# not `id::text = $2`, which no index serves (a scan of the tenant's users).
FIND_BY_NAME_OR_ID = """
SELECT id, tenant_id, user_name, email, locale, password_hash
  FROM users
 WHERE tenant_id = $1 AND (lower(user_name) = lower($2) OR id = $3)
 ORDER BY lower(user_name) = lower($2) DESC
 LIMIT 1
"""
BY_ID = "SELECT id, tenant_id, user_name, email, locale, password_hash FROM users WHERE id = $1"


async def find_by_name_or_id(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: uuid.UUID, name_or_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_BY_NAME_OR_ID, tenant_id, name_or_id, as_uuid(name_or_id))


def as_uuid(text: str) -> uuid.UUID | None:
    """`text` as a UUID, or None when it is not one."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def find_by_id(conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID):
    return await conn.fetchrow(BY_ID, user_id)


def links_for(api_key: str | None, request_id: uuid.UUID | None) -> dict[str, Link]:
    """HAL links of a self-registered user (none without the tenant's API key at hand)."""
    if api_key is None:
        return {}
    links = {
        "activate": Link(href=f"/{api_key}/register/activate/{{activationToken}}", templated=True)
    }
    if request_id is not None:
        links["self"] = Link(href=f"/{api_key}/register/requests/{request_id}")
    return links


def admin_links(api_key: str, user_id: uuid.UUID) -> dict[str, Link]:
    """HAL links of a user as the back office shows it (GET /{apiKey}/users/{id})."""
    return {"self": Link(href=f"/{api_key}/users/{user_id}")}


async def fetch_user(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    api_key: str | None,
) -> User | None:
    """The user representation, or None when no such user exists in the tenant."""
    row = await conn.fetchrow(USER_QUERY, user_id, tenant_id)
    if row is None:
        return None
    return user_from_row(row, roles=row["roles"], links=links_for(api_key, row["request_id"]))


def user_from_row(row: asyncpg.Record, *, roles: list[dict], links: dict[str, Link]) -> User:
    """The representation of a `users` row, with its roles ({id, name, description})."""
    return User(
        id=row["id"],
        user_name=row["user_name"],
        email=row["email"],
        name=row["name"],
        creation_date=row["created_at"],
        date_created=row["created_at"],
        date_updated=row["updated_at"],
        is_approved=row["is_approved"],
        is_locked_out=row["is_locked_out"],
        roles=[Role(**r) for r in roles],
        dashboard_settings=row["dashboard_settings"],
        locale=row["locale"],
        links=links,
    )


async def stand_in_user(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    tenant_id: uuid.UUID,
    api_key: str,
    request_id: uuid.UUID,
    user_id: uuid.UUID,
    user_name: str,
    email: str,
    locale: str,
    created: dt.datetime,
) -> User:
    """What a new registration would have returned, for an address that is taken under
    --duplicates silent: the caller must not be able to tell the two apart."""
    role = await conn.fetchrow(
        "SELECT id, name, description FROM roles WHERE tenant_id = $1 AND lower(name) = 'user'",
        tenant_id,
    )
    return User(
        id=user_id,
        user_name=user_name,
        email=email,
        name="",
        creation_date=created,
        date_created=created,
        date_updated=created,
        is_approved=False,
        is_locked_out=False,
        roles=[Role(**dict(role))] if role else [],
        dashboard_settings={},
        locale=locale,
        links=links_for(api_key, request_id),
    )
