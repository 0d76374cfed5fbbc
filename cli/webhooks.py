"""`registrar webhook add|list|remove|replay` — a tenant's webhook endpoints (SPEC §11).
Each prints JSON on stdout; `add` prints the signing secret, once."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from cli.admin import _with_pool
from service import webhooks
from service.settings import Settings


def add_parser(sub: argparse._SubParsersAction, uuid_type) -> None:
    """The `webhook` command and its four actions."""
    webhook = sub.add_parser("webhook", help="manage webhook endpoints").add_subparsers(
        dest="action", required=True
    )
    p = webhook.add_parser("add", help="register an endpoint; prints its id and secret once")
    p.add_argument("--tenant", type=uuid_type, required=True)
    p.add_argument("--url", required=True, help="https URL the events are POSTed to")
    p.add_argument(
        "--event",
        action="append",
        metavar="TYPE",
        help="a public event (user.registered or registrar.user.registered.v1); "
        "repeatable; default: every public event",
    )
    p.set_defaults(func=cmd_webhook_add)
    p = webhook.add_parser("list", help="a tenant's endpoints as JSON lines (never the secret)")
    p.add_argument("--tenant", type=uuid_type, required=True)
    p.set_defaults(func=cmd_webhook_list)
    p = webhook.add_parser("remove", help="remove an endpoint and its deliveries")
    p.add_argument("endpoint_id", type=uuid_type, metavar="ID")
    p.set_defaults(func=cmd_webhook_remove)
    p = webhook.add_parser(
        "replay", help="queue an endpoint's parked deliveries again (and enable it)"
    )
    p.add_argument("endpoint_id", type=uuid_type, metavar="ID")
    p.set_defaults(func=cmd_webhook_replay)


def cmd_webhook_add(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.seal_public_key:
        sys.exit("REGISTRAR_SEAL_PUBLIC_KEY is not set: the signing secret is stored sealed")

    async def action(pool):
        return await webhooks.create_endpoint(
            pool,
            tenant_id=args.tenant,
            url=args.url,
            events=args.event,
            public_key=settings.seal_public_key,
            allow_private=settings.webhook_allow_private,
            max_per_tenant=settings.webhook_max_per_tenant,
        )

    try:
        endpoint, secret = asyncio.run(_with_pool(settings, action))
    except (webhooks.WebhookError, LookupError) as exc:
        sys.exit(str(exc))
    print(json.dumps({**endpoint.to_json(), "secret": secret}))


def cmd_webhook_list(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await webhooks.list_endpoints(pool, args.tenant)

    for endpoint in asyncio.run(_with_pool(settings, action)):
        print(json.dumps(endpoint.to_json()))


def cmd_webhook_remove(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await webhooks.remove_endpoint(pool, args.endpoint_id)

    if not asyncio.run(_with_pool(settings, action)):
        sys.exit(f"no webhook endpoint with id {args.endpoint_id}")
    print(json.dumps({"id": str(args.endpoint_id), "removed": True}))


def cmd_webhook_replay(settings: Settings, args: argparse.Namespace) -> None:
    async def action(pool):
        return await webhooks.replay(pool, args.endpoint_id)

    replayed = asyncio.run(_with_pool(settings, action))
    if replayed is None:
        sys.exit(f"no webhook endpoint with id {args.endpoint_id}")
    print(json.dumps({"id": str(args.endpoint_id), "replayed": replayed, "enabled": True}))
