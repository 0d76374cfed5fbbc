"""Tenants (applications) and their access tokens."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg

from service import links, origins, tokens

CaptchaMode = Literal["none", "pow"]
DuplicatesMode = Literal["conflict", "silent"]


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    registration_enabled: bool
    captcha: CaptchaMode
    activation_url_prefixes: tuple[str, ...]
    duplicates: DuplicatesMode
    default_locale: str
    secret: bytes
    mail_from: str | None = None
    allowed_origins: tuple[str, ...] = ()  # browser origins (service.origins), for CORS

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Tenant:
        return cls(
            id=row["id"],
            name=row["name"],
            registration_enabled=row["registration_enabled"],
            captcha=row["captcha"],
            activation_url_prefixes=tuple(row["activation_url_prefixes"]),
            duplicates=row["duplicates"],
            default_locale=row["default_locale"],
            secret=bytes(row["secret"]),
            mail_from=row["mail_from"],
            allowed_origins=tuple(row["allowed_origins"]),
        )

    def activation_url_problem(self, url: str) -> str | None:
        """Why `url` may not be an activation link of this tenant, or None (service.links)."""
        return links.problem(url, self.activation_url_prefixes, links.ACTIVATION_PLACEHOLDER)

    def recover_url_problem(self, url: str) -> str | None:
        """Why `url` may not be a password recovery link of this tenant, or None: checked
        like an activation link, against the same prefixes (SPEC §10)."""
        return links.problem(url, self.activation_url_prefixes, links.RECOVERY_PLACEHOLDER)

    def allows_activation_url(self, url: str) -> bool:
        """True when `url` is under one of the tenant's allowed prefixes, compared as
        parsed URLs (scheme, host, port, path), with exactly one placeholder."""
        return self.activation_url_problem(url) is None


def check_prefixes(prefixes: list[str]) -> list[str]:
    """The prefixes, unchanged, or ValueError naming the first that is not a proper URL."""
    for prefix in prefixes:
        try:
            links.parse_prefix(prefix)
        except links.LinkError as exc:
            raise ValueError(f"activation URL prefix {prefix!r} {exc}") from None
    return prefixes


# Every tenant starts with Blynk's three roles (their numbers are Blynk's roleIds);
# self-registered and invited users get `User`.
PREDEFINED_ROLES = (
    (1, "Admin", "Administers the organization"),
    (2, "Staff", "Works for the organization"),
    (3, "User", "Default role of registered users"),
)


async def create_tenant(
    pool: asyncpg.Pool,
    *,
    name: str,
    registration_enabled: bool = True,
    captcha: CaptchaMode = "none",
    activation_url_prefixes: list[str],
    duplicates: DuplicatesMode = "conflict",
    default_locale: str = "en",
    mail_from: str | None = None,
    allowed_origins: list[str] | None = None,
) -> tuple[Tenant, str]:
    """Create a tenant with its default `User` role; returns it and its API key (shown once).

    ValueError when a prefix is not an https (or local http) URL (service.links), or an
    allowed origin is not scheme://host[:port] (service.origins)."""
    check_prefixes(activation_url_prefixes)
    allowed = origins.normalize_all(allowed_origins or [])
    api_key = tokens.new_secret()
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO tenants (id, name, api_key_hash, registration_enabled, captcha,
                                 activation_url_prefixes, duplicates, default_locale, secret,
                                 mail_from, allowed_origins)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            RETURNING *
            """,
            uuid.uuid4(),
            name,
            tokens.hash_secret(api_key),
            registration_enabled,
            captcha,
            activation_url_prefixes,
            duplicates,
            default_locale,
            tokens.new_secret().encode(),
            mail_from,
            allowed,
        )
        await conn.executemany(
            "INSERT INTO roles (id, tenant_id, number, name, description) "
            "VALUES ($1, $2, $3, $4, $5)",
            [(uuid.uuid4(), row["id"], *role) for role in PREDEFINED_ROLES],
        )
    return Tenant.from_row(row), api_key


async def find_by_api_key(pool: asyncpg.Pool, api_key: str) -> Tenant | None:
    """The tenant whose (unrevoked) API key this is, or None.

    The lookup is by SHA-256 hash, so the database compares digests, never the key.
    """
    row = await pool.fetchrow(
        "SELECT * FROM tenants WHERE api_key_hash = $1 AND api_key_revoked_at IS NULL",
        tokens.hash_secret(api_key),
    )
    return Tenant.from_row(row) if row else None


# What `update_tenant` may change (the columns of `registrar tenant update`).
UPDATABLE = (
    "name",
    "registration_enabled",
    "captcha",
    "activation_url_prefixes",
    "duplicates",
    "default_locale",
    "mail_from",
    "allowed_origins",
)


async def update_tenant(pool: asyncpg.Pool, tenant_id: uuid.UUID, **changes) -> Tenant | None:
    """Change some of a tenant's settings (UPDATABLE); the tenant as it is now, or None
    when there is no such tenant. Gateways forget their cached copy at once (migration
    0009). ValueError for an unknown setting, a bad prefix or origin."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    if "activation_url_prefixes" in changes:
        check_prefixes(changes["activation_url_prefixes"])
    if "allowed_origins" in changes:
        changes["allowed_origins"] = origins.normalize_all(changes["allowed_origins"])
    if not changes:
        row = await pool.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
    else:
        columns = list(changes)  # names from UPDATABLE only, never from the caller's text
        assignments = ", ".join(f"{name} = ${n}" for n, name in enumerate(columns, start=2))
        row = await pool.fetchrow(
            f"UPDATE tenants SET {assignments} WHERE id = $1 RETURNING *",
            tenant_id,
            *(changes[name] for name in columns),
        )
    return Tenant.from_row(row) if row else None


async def rotate_api_key(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> str | None:
    """Give the tenant a new API key (returned, shown once); the old one stops working at
    once, since every request looks its key up by hash. None when there is no such
    tenant (or its key was revoked)."""
    api_key = tokens.new_secret()
    rotated = await pool.fetchval(
        "UPDATE tenants SET api_key_hash = $2 WHERE id = $1 AND api_key_revoked_at IS NULL "
        "RETURNING true",
        tenant_id,
        tokens.hash_secret(api_key),
    )
    return api_key if rotated else None


async def create_access_token(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, scopes: list[str]
) -> tuple[uuid.UUID, str]:
    """Create a bearer token for a tenant; returns its id and the token (shown once)."""
    token = tokens.new_secret()
    token_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO access_tokens (id, tenant_id, token_hash, scopes) VALUES ($1, $2, $3, $4)",
        token_id,
        tenant_id,
        tokens.hash_secret(token),
        scopes,
    )
    return token_id, token


@dataclass(frozen=True)
class AccessToken:
    id: uuid.UUID
    tenant: Tenant
    scopes: frozenset[str]


async def find_access_token(pool: asyncpg.Pool, token: str) -> AccessToken | None:
    """The unrevoked bearer token `token` with its tenant, or None (lookup by hash)."""
    row = await pool.fetchrow(
        """
        SELECT a.id AS token_id, a.scopes, t.*
          FROM access_tokens a JOIN tenants t ON t.id = a.tenant_id
         WHERE a.token_hash = $1 AND a.revoked_at IS NULL AND t.api_key_revoked_at IS NULL
        """,
        tokens.hash_secret(token),
    )
    if row is None:
        return None
    return AccessToken(
        id=row["token_id"], tenant=Tenant.from_row(row), scopes=frozenset(row["scopes"])
    )


@dataclass(frozen=True)
class AccessTokenInfo:
    """What may be shown about a bearer token: never the token or its hash."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


async def list_access_tokens(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[AccessTokenInfo]:
    """The tenant's bearer tokens, live and revoked, oldest first."""
    rows = await pool.fetch(
        "SELECT id, tenant_id, scopes, created_at, revoked_at FROM access_tokens "
        "WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id,
    )
    return [
        AccessTokenInfo(
            id=r["id"],
            tenant_id=r["tenant_id"],
            scopes=tuple(r["scopes"]),
            created_at=r["created_at"],
            revoked_at=r["revoked_at"],
        )
        for r in rows
    ]


async def revoke_access_token(pool: asyncpg.Pool, token_id: uuid.UUID) -> bool:
    """Revoke a bearer token by id; False when there is no such live token."""
    revoked = await pool.fetchval(
        "UPDATE access_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL "
        "RETURNING true",
        token_id,
    )
    return bool(revoked)


async def role_id_of(
    pool: asyncpg.Pool, *, tenant_id: uuid.UUID, role: uuid.UUID | int
) -> uuid.UUID | None:
    """The id of the tenant's role with this id or number (Blynk's roleId), or None."""
    column = "number" if isinstance(role, int) else "id"  # a column name, never input
    return await pool.fetchval(
        f"SELECT id FROM roles WHERE {column} = $1 AND tenant_id = $2", role, tenant_id
    )


async def role_exists(pool: asyncpg.Pool, *, tenant_id: uuid.UUID, role_id: uuid.UUID) -> bool:
    return await role_id_of(pool, tenant_id=tenant_id, role=role_id) is not None
