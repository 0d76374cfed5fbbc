"""Stopping and starting the shared PostgreSQL and RabbitMQ of this machine.

Two rules: a command that restores a service runs to its end even if the harness is
interrupted meanwhile (it would otherwise leave the machine without a database or broker),
and it runs in a session of its own, so a Ctrl-C meant for the harness does not reach it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.faults.common import progress

PG_ETC = Path("/etc/postgresql")
PG_PORT = 5432
AMQP_PORT = 5672
T = TypeVar("T")


def postgres_version() -> str:
    """The version directory of the local cluster (e.g. "15"), from /etc/postgresql."""
    versions = sorted((p.name for p in PG_ETC.iterdir() if (p / "main").is_dir()), key=float)
    if not versions:
        raise RuntimeError(f"no PostgreSQL cluster under {PG_ETC}")
    return versions[-1]


def pg_ctlcluster(action: str) -> list[str]:
    return ["pg_ctlcluster", "--skip-systemctl-redirect", postgres_version(), "main", action]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, start_new_session=True
    )
    if done.returncode != 0:
        progress(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[:300]}")
    return done


async def run_to_completion(argv: list[str], timeout: float = 180) -> int:
    """Run a command off the event loop, to its end (see finish_anyway). Its exit code."""
    progress(f"$ {' '.join(argv)}")
    done = await finish_anyway(_run, argv, timeout)
    return done.returncode


async def finish_anyway(blocking: Callable[..., T], *args: object) -> T:
    """`blocking(*args)` in a thread; if the harness is cancelled meanwhile, wait for it
    to finish anyway, then let the cancellation through. Its result."""
    command = asyncio.ensure_future(asyncio.to_thread(blocking, *args))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(command)
            break
        except asyncio.CancelledError:
            cancelled = True
            if command.done():
                result = command.result()
                break
    if cancelled:
        raise asyncio.CancelledError
    return result


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_services_running() -> None:
    """Start RabbitMQ's app and the PostgreSQL cluster if a fault left them down.

    Blocking on purpose: called from `finally` blocks and at the end of the run.
    """
    if not port_open(AMQP_PORT):
        progress("RabbitMQ is not listening: rabbitmqctl start_app")
        _run(["rabbitmqctl", "start_app"], timeout=120)
        _run(["rabbitmqctl", "await_startup"], timeout=120)
    if not port_open(PG_PORT):
        progress("PostgreSQL is not listening: pg_ctlcluster start")
        _run(pg_ctlcluster("start"), timeout=120)
