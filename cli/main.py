"""`registrar` - migrate, run the gateway or workers, and administer tenants and keys."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from cli.devmail import mailbox_page, start_mailbox
from cli.workers import WORKERS, run_workers
from service import amqp, db, deadletters, logs, tenants
from service.gateway.app import create_app
from service.sealing import generate_key_pair
from service.settings import Settings

log = logging.getLogger("registrar")


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def serve_gateway(
    settings: Settings,
    host: str,
    port: int,
    stop: asyncio.Event,
    customize: Callable[[web.Application], None] | None = None,
) -> None:
    """Serve HTTP until `stop`; then stop accepting and finish in-flight requests."""
    app = create_app(settings)
    if customize:
        customize(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("gateway listening", extra={"host": host, "port": port})
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("gateway stopped")


def _run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def wrapper() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await main(stop)

    asyncio.run(wrapper())


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> None:
    applied = asyncio.run(db.migrate(settings.database_url))
    print(json.dumps({"applied": applied}))


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.seal_public_key:
        sys.exit("REGISTRAR_SEAL_PUBLIC_KEY is not set: run `registrar keys generate` first")
    _run(lambda stop: serve_gateway(settings, args.host, args.port, stop))


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    _run(lambda stop: run_workers(settings, args.names, stop))


def _dev_keys(settings: Settings) -> Settings:
    """`registrar run` without keys: create a pair once under var/ and reuse it."""
    if settings.seal_public_key and settings.seal_private_key:
        return settings
    path = Path(settings.var_dir) / "seal.env"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        public, private = generate_key_pair()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"REGISTRAR_SEAL_PUBLIC_KEY={public}\nREGISTRAR_SEAL_PRIVATE_KEY={private}\n")
        log.info("generated a sealing key pair", extra={"path": str(path)})
    values = dict(line.split("=", 1) for line in path.read_text().split() if "=" in line)
    return settings.model_copy(
        update={
            "seal_public_key": values["REGISTRAR_SEAL_PUBLIC_KEY"],
            "seal_private_key": Settings(
                seal_private_key=values["REGISTRAR_SEAL_PRIVATE_KEY"]
            ).seal_private_key,
        }
    )


def cmd_run(settings: Settings, args: argparse.Namespace) -> None:
    settings = _dev_keys(settings)
    mailbox = None
    mail_dir = Path(settings.var_dir) / "mail"
    if not settings.smtp_url:
        mailbox = start_mailbox(mail_dir, port=settings.dev_smtp_port)
        settings = settings.model_copy(
            update={"smtp_url": f"smtp://127.0.0.1:{settings.dev_smtp_port}"}
        )
        log.info(
            "development mailbox", extra={"smtp_port": settings.dev_smtp_port, "dir": str(mail_dir)}
        )
    asyncio.run(db.migrate(settings.database_url))

    def dev_routes(app: web.Application) -> None:
        if mailbox is not None:
            page = mailbox_page(mail_dir)
            app.router.add_get("/_dev/mail", page)
            app.router.add_get("/_dev/mail/{name}", page)

    async def main(stop: asyncio.Event) -> None:
        await asyncio.gather(
            serve_gateway(settings, args.host, args.port, stop, customize=dev_routes),
            run_workers(settings, ["all"], stop),
        )

    try:
        _run(main)
    finally:
        if mailbox is not None:
            mailbox.stop()


async def _with_pool(settings: Settings, action):
    pool = await db.create_pool(settings.database_url, max_size=2)
    try:
        return await action(pool)
    finally:
        await pool.close()


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
        )

    tenant, api_key = asyncio.run(_with_pool(settings, action))
    print(
        json.dumps(
            {
                "id": str(tenant.id),
                "name": tenant.name,
                "apiKey": api_key,
                "registrationEnabled": tenant.registration_enabled,
                "captcha": tenant.captcha,
                "activationUrlPrefixes": list(tenant.activation_url_prefixes),
                "duplicates": tenant.duplicates,
                "defaultLocale": tenant.default_locale,
                "mailFrom": tenant.mail_from,
            }
        )
    )


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
        publisher = await amqp.open_publisher(
            connection,
            names,
            max_length=settings.queue_max_length,
            timeout=settings.confirm_timeout_s,
            retry_delays=settings.retry_delays_s,
        )
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


def _uuid(value: str):
    import uuid

    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def _locale(value: str) -> str:
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(value)
    except (ValueError, UnknownLocaleError):
        raise argparse.ArgumentTypeError(f"unknown locale {value!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="registrar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply SQL migrations").set_defaults(func=cmd_migrate)

    p = sub.add_parser("gateway", help="run the HTTP gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("worker", help="run workers")
    p.add_argument("names", nargs="+", metavar="NAME", help=f"{', '.join(WORKERS)} or all")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("run", help="migrate, then gateway + all workers + dev mailbox")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_run)

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    p = tenant.add_parser("create", help="create a tenant; prints its id and API key")
    p.add_argument("name")
    p.add_argument("--no-registration", action="store_true")
    p.add_argument("--captcha", choices=["none", "pow"], default="none")
    p.add_argument("--activation-url-prefix", action="append", metavar="URL")
    p.add_argument("--duplicates", choices=["conflict", "silent"], default="conflict")
    p.add_argument("--default-locale", type=_locale, default="en")
    p.add_argument("--mail-from", metavar="ADDRESS", help="From: of this tenant's email")
    p.set_defaults(func=cmd_tenant_create)

    token = sub.add_parser("token", help="manage bearer tokens").add_subparsers(
        dest="action", required=True
    )
    p = token.add_parser("create", help="create a bearer token; prints it once")
    p.add_argument("--tenant", type=_uuid, required=True)
    p.add_argument("--scope", action="append", choices=["users:invite"])
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("revoke", help="revoke a bearer token by its id")
    p.add_argument("token_id", type=_uuid, metavar="TOKEN_ID")
    p.set_defaults(func=cmd_token_revoke)

    dlq = sub.add_parser("dlq", help="dead-lettered messages").add_subparsers(
        dest="action", required=True
    )
    p = dlq.add_parser("list", help="count (and peek at) each dead-letter queue")
    p.add_argument("--peek", type=int, default=5, help="show up to N messages per queue")
    p.set_defaults(func=cmd_dlq_list)
    p = dlq.add_parser("replay", help="move a dead-letter queue's messages back to work")
    p.add_argument("queue", metavar="QUEUE", help="registration, invitation or mailer")
    p.set_defaults(func=cmd_dlq_replay)

    keys = sub.add_parser("keys", help="sealing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("generate", help="print a new key pair").set_defaults(func=cmd_keys_generate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = Settings()
    logs.configure(settings.log_level)
    if getattr(args, "action", None) == "create" and args.command == "token" and not args.scope:
        args.scope = ["users:invite"]
    args.func(settings, args)


if __name__ == "__main__":
    main()
