"""The long-running commands: migrate, gateway, worker, and run (everything at once)."""

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
from cli.workers import run_workers
from service import db, metrics
from service.gateway.app import create_app
from service.sealing import generate_key_pair
from service.settings import Settings
from service.supervisor import Supervisor, TaskCrashed

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
    supervisor: Supervisor | None = None,
    *,
    metrics_server: bool = True,
) -> None:
    """Serve HTTP until `stop`; then stop accepting and finish in-flight requests.
    A crashed background task stops the gateway too, which then exits non-zero.

    With REGISTRAR_METRICS_PORT set, /metrics (and /healthz, /readyz) are served on that
    port instead of the public one; `metrics_server=False` when another part of the
    process (`registrar run`'s workers) serves that port already."""
    own_supervisor = supervisor is None
    supervisor = supervisor or Supervisor(stop, backoff_max=settings.restart_backoff_max_s)
    app = create_app(settings, supervisor)
    if customize:
        customize(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    metrics_runner: web.AppRunner | None = None
    try:
        await runner.setup()
        if metrics_server and settings.metrics_port:
            metrics_runner = await metrics.serve_metrics(
                settings.metrics_host, settings.metrics_port, readiness=supervisor.health.report
            )
        await web.TCPSite(runner, host, port).start()
        log.info(
            "gateway listening",
            extra={"host": host, "port": port, "metrics_port": settings.metrics_port},
        )
        await stop.wait()
    finally:
        await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        log.info("gateway stopped")
    if own_supervisor:
        await supervisor.close()
        supervisor.raise_if_failed()


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None  # asyncio's own


def _run(settings: Settings, main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def wrapper() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await main(stop)

    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
            runner.run(wrapper())
    except TaskCrashed as exc:
        sys.exit(f"registrar: {exc}")  # exit status 1; the traceback is in the log


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> None:
    applied = asyncio.run(db.migrate(settings.database_session_url))
    print(json.dumps({"applied": applied}))


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.seal_public_key:
        sys.exit("REGISTRAR_SEAL_PUBLIC_KEY is not set: run `registrar keys generate` first")
    _run(settings, lambda stop: serve_gateway(settings, args.host, args.port, stop))


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    _run(settings, lambda stop: run_workers(settings, args.names, stop))


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
    asyncio.run(db.migrate(settings.database_session_url))

    def dev_routes(app: web.Application) -> None:
        if mailbox is not None:
            page = mailbox_page(mail_dir)
            app.router.add_get("/_dev/mail", page)
            app.router.add_get("/_dev/mail/{name}", page)

    async def main(stop: asyncio.Event) -> None:
        # One supervisor for the whole process: a crash anywhere stops everything.
        supervisor = Supervisor(stop, backoff_max=settings.restart_backoff_max_s)

        async def stopping_all(part: Awaitable[None]) -> None:
            try:
                await part
            finally:
                stop.set()  # the gateway does not outlive failed workers, nor vice versa

        results = await asyncio.gather(
            stopping_all(
                serve_gateway(
                    settings,
                    args.host,
                    args.port,
                    stop,
                    customize=dev_routes,
                    supervisor=supervisor,
                    metrics_server=False,  # the workers serve REGISTRAR_METRICS_PORT
                )
            ),
            stopping_all(run_workers(settings, ["all"], stop, supervisor)),
            return_exceptions=True,
        )
        await supervisor.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        supervisor.raise_if_failed()

    try:
        _run(settings, main)
    finally:
        if mailbox is not None:
            mailbox.stop()
