"""Administration commands: tenants, bearer tokens, sealing keys, dead letters.
Each prints JSON on stdout, so scripts can read what it did."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from service import amqp, deadletters, startup, tenants
from service.sealing import generate_key_pair
from service.settings import Settings


async def _with_pool(settings: Settings, action):
    pool = await startup.create_pool(settings, max_size=2)
    try:
        return await action(pool)
    finally:
        await pool.close()


def _tenant_json(tenant: tenants.Tenant, **extra: str) -> str:
    return json.dumps(
        {
            "id": str(tenant.id),
            "name": tenant.name,
            **extra,
            "registrationEnabled": tenant.registration_enabled,
            "captcha": tenant.captcha,
            "activationUrlPrefixes": list(tenant.activation_url_prefixes),
            "duplicates": tenant.duplicates,
            "defaultLocale": tenant.default_locale,
            "mailFrom": tenant.mail_from,
            "allowedOrigins": list(tenant.allowed_origins),
        }
    )


def cmd_tenant_create(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await tenants.create_tenant(
            pool,
            name=args.name,
            registration_enabled=not args.no_registration,
            captcha=args.captcha,
            activation_url_prefixes=args.activation_url_prefix or [],
            duplicates=args.duplicates,
            default_locale=args.default_locale,
            mail_from=args.mail_from,
            allowed_origins=args.allowed_origin or [],
        )

    tenant, api_key = asyncio.run(_with_pool(settings, action))
    print(_tenant_json(tenant, apiKey=api_key))


def cmd_tenant_update(settings: Settings, args: argparse.Namespace) -> None:
    """Only the options given change; a repeatable option given replaces the whole list."""
    changes = {
        column: value
        for column, value in (
            ("name", args.name),
            ("registration_enabled", args.registration),
            ("captcha", args.captcha),
            ("activation_url_prefixes", args.activation_url_prefix),
            ("duplicates", args.duplicates),
            ("default_locale", args.default_locale),
            ("mail_from", args.mail_from),
            ("allowed_origins", [] if args.no_allowed_origins else args.allowed_origin),
        )
        if value is not None
    }

    async def action(pool):
        return await tenants.update_tenant(pool, args.tenant_id, **changes)

    tenant = asyncio.run(_with_pool(settings, action))
    if tenant is None:
        sys.exit(f"no tenant with id {args.tenant_id}")
    print(_tenant_json(tenant))


def cmd_tenant_rotate_key(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await tenants.rotate_api_key(pool, args.tenant_id)

    api_key = asyncio.run(_with_pool(settings, action))
    if api_key is None:
        sys.exit(f"no tenant with id {args.tenant_id}")
    print(json.dumps({"id": str(args.tenant_id), "apiKey": api_key}))


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await tenants.create_access_token(pool, tenant_id=args.tenant, scopes=args.scope)

    token_id, token = asyncio.run(_with_pool(settings, action))
    print(
        json.dumps(
            {
                "id": str(token_id),
                "tenantId": str(args.tenant),
                "scopes": args.scope,
                "token": token,
            }
        )
    )


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await tenants.list_access_tokens(pool, args.tenant)

    for token in asyncio.run(_with_pool(settings, action)):
        print(
            json.dumps(
                {
                    "id": str(token.id),
                    "tenantId": str(token.tenant_id),
                    "scopes": list(token.scopes),
                    "createdAt": token.created_at.isoformat(),
                    "revokedAt": token.revoked_at.isoformat() if token.revoked_at else None,
                }
            )
        )


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await tenants.revoke_access_token(pool, args.token_id)

    if not asyncio.run(_with_pool(settings, action)):
        sys.exit(f"no live token with id {args.token_id}")
    print(json.dumps({"id": str(args.token_id), "revoked": True}))


async def _with_broker(settings: Settings, action):
    connection = await amqp.connect(settings.amqp_url)
    try:
        names = amqp.Names(settings.amqp_prefix)
        publisher = await amqp.publisher_for(connection, settings)
        return await action(connection, publisher, names)
    finally:
        await connection.close()


def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> None:
    async def action(connection, _publisher, names):
        return await deadletters.list_dead_letters(connection, names, peek=args.peek)

    for queue in asyncio.run(_with_broker(settings, action)):
        print(
            json.dumps(
                {
                    "queue": queue.queue,
                    "worker": queue.role,
                    "messages": queue.messages,
                    "sample": [vars(m) for m in queue.sample],
                }
            )
        )


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> None:
    async def action(connection, publisher, names):
        try:
            return await deadletters.replay(connection, publisher, names, args.queue)
        except ValueError as exc:
            sys.exit(str(exc))

    moved = asyncio.run(_with_broker(settings, action))
    print(json.dumps({"queue": args.queue, "replayed": moved}))


def cmd_keys_generate(_settings: Settings, _args: argparse.Namespace) -> None:
    public, private = generate_key_pair()
    print(f"REGISTRAR_SEAL_PUBLIC_KEY={public}")
    print(f"REGISTRAR_SEAL_PRIVATE_KEY={private}")
