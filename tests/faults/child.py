"""A server of the harness in a process of its own (the SMTP sink, the webhook receiver),
so that an outage fault can take it down the way a real one goes down — the kernel
closes every socket, new connections are refused — and bring it back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class ChildServer:
    """Start, stop and start again `python -m MODULE ARGS...`, logging to `log`; ready
    once `ready()` says so. Subclasses say what ready means."""

    module = ""  # e.g. "tests.faults.sink"
    what = "server"

    def __init__(self, port: int, log: Path, args: list[str], env: dict[str, str] | None = None):
        self.port = port
        self.log = log
        self._args = args
        self._env = env
        self._process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def ready(self) -> bool:
        raise NotImplementedError

    async def start(self, timeout: float = 20) -> None:
        """Start the process (no-op while it runs) and wait until it is ready."""
        if self.running:
            return
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self._args],
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
            )
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.what} exited with {self._process.returncode}, see {self.log}"
                )
            if await self.ready():
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.what} on port {self.port} did not start, see {self.log}")

    def stop(self) -> None:
        """Stop the process at once (blocking and quick, so it is safe in `finally`)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


def json_lines(path: Path) -> list[dict]:
    """The JSON lines a child server recorded so far, in order (a line cut short by a
    kill is skipped)."""
    entries = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries


def serve_from_argv(serve: Callable[[int, Path], Awaitable[None]]) -> None:
    """The `python -m` entry of a child server: `serve(PORT, FILE)` until killed."""
    port, path = int(sys.argv[1]), Path(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(port, path))
