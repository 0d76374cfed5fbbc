"""`registrar` - migrate, run the gateway or workers, and administer tenants and keys."""

from __future__ import annotations

import argparse
import uuid

from babel import Locale, UnknownLocaleError

from cli import admin, prune, serve, webhooks
from cli.workers import WORKERS
from service import links, logs, origins
from service.settings import Settings


def _uuid(value: str):
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def _locale(value: str) -> str:
    try:
        Locale.parse(value)
    except (ValueError, UnknownLocaleError):
        raise argparse.ArgumentTypeError(f"unknown locale {value!r}") from None
    return value


def _prefix(value: str) -> str:
    try:
        links.parse_prefix(value)
    except links.LinkError as exc:
        raise argparse.ArgumentTypeError(f"activation URL prefix {value!r} {exc}") from None
    return value


def _origin(value: str) -> str:
    try:
        return origins.normalize(value)
    except origins.OriginError as exc:
        raise argparse.ArgumentTypeError(f"allowed origin {value!r} {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="registrar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply SQL migrations").set_defaults(func=serve.cmd_migrate)

    p = sub.add_parser("gateway", help="run the HTTP gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=serve.cmd_gateway)

    p = sub.add_parser("worker", help="run workers")
    p.add_argument("names", nargs="+", metavar="NAME", help=f"{', '.join(WORKERS)} or all")
    p.set_defaults(func=serve.cmd_worker)

    p = sub.add_parser("run", help="migrate, then gateway + all workers + dev mailbox")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=serve.cmd_run)

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    p = tenant.add_parser("create", help="create a tenant; prints its id and API key")
    p.add_argument("name")
    p.add_argument("--no-registration", action="store_true")
    p.add_argument("--captcha", choices=["none", "pow"], default="none")
    p.add_argument("--activation-url-prefix", action="append", metavar="URL", type=_prefix)
    p.add_argument("--duplicates", choices=["conflict", "silent"], default="conflict")
    p.add_argument("--default-locale", type=_locale, default="en")
    p.add_argument("--mail-from", metavar="ADDRESS", help="From: of this tenant's email")
    p.add_argument("--allowed-origin", action="append", metavar="ORIGIN", type=_origin)
    p.set_defaults(func=admin.cmd_tenant_create)
    p = tenant.add_parser(
        "update", help="change a tenant's settings (only the options given); prints it"
    )
    p.add_argument("tenant_id", type=_uuid, metavar="TENANT_ID")
    p.add_argument("--name")
    switch = p.add_mutually_exclusive_group()
    switch.add_argument("--registration", dest="registration", action="store_true", default=None)
    switch.add_argument("--no-registration", dest="registration", action="store_false")
    p.add_argument("--captcha", choices=["none", "pow"])
    p.add_argument("--activation-url-prefix", action="append", metavar="URL", type=_prefix)
    p.add_argument("--duplicates", choices=["conflict", "silent"])
    p.add_argument("--default-locale", type=_locale)
    p.add_argument("--mail-from", metavar="ADDRESS")
    origins_group = p.add_mutually_exclusive_group()
    origins_group.add_argument("--allowed-origin", action="append", metavar="ORIGIN", type=_origin)
    origins_group.add_argument(
        "--no-allowed-origins", action="store_true", help="allow no browser origin"
    )
    p.set_defaults(func=admin.cmd_tenant_update)
    p = tenant.add_parser("rotate-key", help="give a tenant a new API key; the old one stops")
    p.add_argument("tenant_id", type=_uuid, metavar="TENANT_ID")
    p.set_defaults(func=admin.cmd_tenant_rotate_key)

    token = sub.add_parser("token", help="manage bearer tokens").add_subparsers(
        dest="action", required=True
    )
    p = token.add_parser("create", help="create a bearer token; prints it once")
    p.add_argument("--tenant", type=_uuid, required=True)
    p.add_argument("--scope", action="append", choices=list(SCOPES))
    p.set_defaults(func=admin.cmd_token_create)
    p = token.add_parser("list", help="a tenant's bearer tokens as JSON lines (never the token)")
    p.add_argument("--tenant", type=_uuid, required=True)
    p.set_defaults(func=admin.cmd_token_list)
    p = token.add_parser("revoke", help="revoke a bearer token by its id")
    p.add_argument("token_id", type=_uuid, metavar="TOKEN_ID")
    p.set_defaults(func=admin.cmd_token_revoke)

    dlq = sub.add_parser("dlq", help="dead-lettered messages").add_subparsers(
        dest="action", required=True
    )
    p = dlq.add_parser("list", help="count (and peek at) each dead-letter queue")
    p.add_argument("--peek", type=int, default=5, help="show up to N messages per queue")
    p.set_defaults(func=admin.cmd_dlq_list)
    p = dlq.add_parser("replay", help="move a dead-letter queue's messages back to work")
    p.add_argument("queue", metavar="QUEUE", help="registration, invitation or mailer")
    p.set_defaults(func=admin.cmd_dlq_replay)

    webhooks.add_parser(sub, _uuid)
    prune.add_parser(sub)

    keys = sub.add_parser("keys", help="sealing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("generate", help="print a new key pair").set_defaults(
        func=admin.cmd_keys_generate
    )
    return parser


# What a tenant's bearer token may be allowed: inviting (Blynk's organization API),
# reading or changing users (the back office; users:write also sets passwords), and
# managing the tenant's webhook endpoints.
SCOPES = ("users:invite", "users:read", "users:write", "webhooks:manage")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    logs.configure(settings.log_level)
    if getattr(args, "action", None) == "create" and args.command == "token" and not args.scope:
        args.scope = ["users:invite"]
    args.func(settings, args)


if __name__ == "__main__":
    main()
