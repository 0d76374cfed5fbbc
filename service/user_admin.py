"""What an administrator changes about a user (SPEC §11): userName, email, name and roles;
approval; an administrator's lock; the account itself.

No secret is involved, so the gateway applies each change itself, in one transaction
with the event that reports it (the outbox; the relay publishes it), and answers once
it is done: a GET right after the 204 sees the change. A worker would add a hop and a
wait, and a command on the broker that someone could try to forge, for nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from schemas.events import UserActivated, UserDeleted, UserLocked, UserUnlocked, UserUpdated
from schemas.users_admin import RoleRef, UserUpdate
from service import sessions, users
from service.errors import EmailTaken, NotFound, UserNameTaken, ValidationFailed
from service.outbox import add_event

# The unique indexes behind a 409 (migration 0014 kept their names).
TAKEN = {"users_tenant_email": EmailTaken, "users_tenant_user_name": UserNameTaken}

LOCKED_ROW = """
SELECT id, user_name, email, name, is_approved, is_locked_out,
       COALESCE(locked_until > now(), false) AS locked_for_now,
       ARRAY(SELECT role_id FROM user_roles WHERE user_id = users.id ORDER BY role_id) AS roles
  FROM users WHERE id = $1 AND tenant_id = $2 FOR UPDATE
"""


async def _locked_user(conn: asyncpg.Connection, tenant_id: uuid.UUID, user: str):
    """The user addressed by userName or id, its row locked until the transaction ends;
    404 when there is none."""
    found = await users.find_by_name_or_id(conn, tenant_id=tenant_id, name_or_id=user)
    row = None if found is None else await conn.fetchrow(LOCKED_ROW, found["id"], tenant_id)
    if row is None:
        raise NotFound("no such user")
    return row


async def resolve_roles(
    conn: asyncpg.Connection | asyncpg.Pool,
    tenant_id: uuid.UUID,
    wanted: Sequence[str | RoleRef],
) -> dict[uuid.UUID, str]:
    """The tenant's roles named (by name, case-insensitively, or by id): their lower-case
    names by id, or a 400 naming those the tenant does not have."""
    names = [w.lower() for w in wanted if isinstance(w, str)]
    names += [w.name.lower() for w in wanted if isinstance(w, RoleRef) and w.id is None]
    ids = [w.id for w in wanted if isinstance(w, RoleRef) and w.id is not None]
    rows = await conn.fetch(
        "SELECT id, lower(name) AS name FROM roles "
        "WHERE tenant_id = $1 AND (lower(name) = ANY($2::text[]) OR id = ANY($3::uuid[]))",
        tenant_id,
        names,
        ids,
    )
    missing = (set(names) - {r["name"] for r in rows}) | {
        str(i) for i in set(ids) - {r["id"] for r in rows}
    }
    if missing:
        raise ValidationFailed(
            f"no such role: {', '.join(sorted(missing))}",
            errors=[{"field": "roles", "message": f"unknown role {m}"} for m in sorted(missing)],
        )
    return {r["id"]: r["name"] for r in rows}


def _changes(row: asyncpg.Record, form: UserUpdate) -> dict[str, object]:
    """The columns the update changes, by wire name (what `user.updated` lists)."""
    wanted = {"userName": form.user_name, "email": form.email, "name": form.name}
    current = {"userName": row["user_name"], "email": row["email"], "name": row["name"]}
    return {k: v for k, v in wanted.items() if v is not None and v != current[k]}


async def update_user(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, user: str, form: UserUpdate
) -> list[str]:
    """Apply the update; the names of the fields it changed (none: nothing happens).
    404 no such user, 409 email or userName taken, 400 unknown role."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await _locked_user(conn, tenant_id, user)
            changes = _changes(row, form)
            roles = None
            if form.roles is not None:
                roles = sorted(await resolve_roles(conn, tenant_id, form.roles))
            if roles is not None and roles != list(row["roles"]):
                await conn.execute(
                    "DELETE FROM user_roles WHERE user_id = $1 AND role_id <> ALL($2::uuid[])",
                    row["id"],
                    roles,
                )
                await conn.execute(
                    "INSERT INTO user_roles (user_id, role_id) SELECT $1, unnest($2::uuid[]) "
                    "ON CONFLICT DO NOTHING",
                    row["id"],
                    roles,
                )
                changes["roles"] = roles
            if not changes:
                return []
            at = await conn.fetchval(
                "UPDATE users SET user_name = COALESCE($2, user_name), "
                "email = COALESCE($3, email), name = COALESCE($4, name), updated_at = now() "
                "WHERE id = $1 RETURNING updated_at",
                row["id"],
                changes.get("userName"),
                changes.get("email"),
                changes.get("name"),
            )
            changed = sorted(changes)
            await add_event(
                conn,
                UserUpdated(user_id=row["id"], tenant_id=tenant_id, at=at, changed=changed),
                subject=str(row["id"]),
            )
            return changed
    except asyncpg.UniqueViolationError as exc:
        error = TAKEN.get(exc.constraint_name or "")
        if error is None:
            raise
        raise error(error.title) from None
    except asyncpg.ForeignKeyViolationError:  # a role was deleted meanwhile
        raise ValidationFailed("a role given was deleted meanwhile") from None


async def delete_user(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, user: str) -> None:
    """Erase the account (its roles, sessions and tokens with it): its email and
    userName become free. 404 when there is no such user."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked_user(conn, tenant_id, user)
        at = await conn.fetchval("DELETE FROM users WHERE id = $1 RETURNING now()", row["id"])
        await add_event(
            conn,
            UserDeleted(user_id=row["id"], tenant_id=tenant_id, at=at, by="admin"),
            subject=str(row["id"]),
        )


async def set_approved(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, user: str, approved: bool
) -> None:
    """Approve (user.activated) or disapprove (user.updated; the user's sessions end, and
    the account is as if never activated). Nothing happens when it is so already."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked_user(conn, tenant_id, user)
        if row["is_approved"] == approved:
            return
        at = await conn.fetchval(
            "UPDATE users SET is_approved = $2, updated_at = now() WHERE id = $1 "
            "RETURNING updated_at",
            row["id"],
            approved,
        )
        if approved:
            event = UserActivated(user_id=row["id"], tenant_id=tenant_id, activated_at=at)
        else:
            await sessions.revoke_all(conn, row["id"])
            event = UserUpdated(
                user_id=row["id"], tenant_id=tenant_id, at=at, changed=["isApproved"]
            )
        await add_event(conn, event, subject=str(row["id"]))


async def lock(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, user: str) -> None:
    """An administrator's lock (until unlocked): no login, and every session ends at once.
    user.locked (reason admin); nothing happens when the user is locked already."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked_user(conn, tenant_id, user)
        if row["is_locked_out"]:
            return
        at = await conn.fetchval(
            "UPDATE users SET is_locked_out = true, updated_at = now() WHERE id = $1 "
            "RETURNING updated_at",
            row["id"],
        )
        await sessions.revoke_all(conn, row["id"])
        await add_event(
            conn,
            UserLocked(user_id=row["id"], tenant_id=tenant_id, at=at, reason="admin"),
            subject=str(row["id"]),
        )


async def unlock(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, user: str) -> None:
    """Lift an administrator's lock and a lock-out after failed logins, and forget the
    failures counted so far. user.unlocked when the user was locked either way."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _locked_user(conn, tenant_id, user)
        was_locked = row["is_locked_out"] or row["locked_for_now"]
        at = await conn.fetchval(
            "UPDATE users SET is_locked_out = false, locked_until = NULL, failed_logins = 0, "
            "first_failed_login_at = NULL, "
            "updated_at = CASE WHEN $2 THEN now() ELSE updated_at END "
            "WHERE id = $1 RETURNING updated_at",
            row["id"],
            was_locked,
        )
        if was_locked:
            await add_event(
                conn,
                UserUnlocked(user_id=row["id"], tenant_id=tenant_id, at=at),
                subject=str(row["id"]),
            )
