"""The registrar processes of one scenario: a gateway and one or more `worker all`.

They are the real console script, started the way an operator would start them (env vars
only), each with its own log file, so a scenario can SIGKILL one and start a fresh one
while the others keep going.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import aiohttp

from tests.conftest import free_port
from tests.faults.common import REGISTRAR, progress

READY_TIMEOUT_S = 60


class Process:
    """One registrar process and its log file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, ready_url: str
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.ready_url = ready_url
        self.popen: subprocess.Popen | None = None
        self._terminated = False

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll the readiness URL until it answers 200; fail early if the process died."""
        url = self.ready_url
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while loop.time() < deadline:
                if not self.alive:
                    raise RuntimeError(f"{self.name} exited before it was ready, see {self.log}")
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name}: {url} not ready after {timeout}s, see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no chance to finish or requeue anything (the fault itself)."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM, once: a second one could cut short the shutdown the first began."""
        if self.alive and not self._terminated:
            self.popen.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); the exit code, None if never run."""
        if self.popen is None:
            return None
        self.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            progress(f"{self.name} ignored SIGTERM for {timeout}s; killing it")
            self.popen.kill()
            self.popen.wait(timeout=10)
        return self.popen.returncode


class Service:
    """Gateway and workers of one scenario; new processes get new log files."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, workers: int = 1) -> None:
        self.port = free_port()
        # Links in email point at this scenario's gateway.
        self.env = {**env, "REGISTRAR_PUBLIC_URL": self.url}
        self.log_dir = log_dir
        self.worker_count = workers
        self.gateway: Process | None = None
        self.workers: list[Process] = []
        self.retired: list[Process] = []
        self._serial = 0
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _process(
        self, kind: str, argv: list[str], extra: dict[str, str], ready_url: str
    ) -> Process:
        self._serial += 1
        name = f"{kind}-{self._serial}"
        log = self.log_dir / f"{name}.log"
        return Process(name, argv, {**self.env, **extra}, log, ready_url)

    async def start(self) -> None:
        """The gateway and `workers` workers, each ready before this returns."""
        await self.spawn_gateway().wait_ready()
        for _ in range(self.worker_count):
            await self.spawn_worker().wait_ready()

    def spawn_gateway(self) -> Process:
        """Start a gateway on the scenario's port (the same one after a kill).

        Synchronous, so that a `finally` block can restore it even while being cancelled;
        wait for it with `wait_ready()`.
        """
        argv = [REGISTRAR, "gateway", "--host", "127.0.0.1", "--port", str(self.port)]
        self.gateway = self._process("gateway", argv, {}, f"{self.url}/readyz")
        self.gateway.start()
        return self.gateway

    def spawn_worker(self) -> Process:
        """Start one more `registrar worker all`, with a metrics port of its own."""
        metrics_port = free_port()
        worker = self._process(
            "worker",
            [REGISTRAR, "worker", "all"],
            {"REGISTRAR_METRICS_PORT": str(metrics_port), "REGISTRAR_METRICS_HOST": "127.0.0.1"},
            f"http://127.0.0.1:{metrics_port}/healthz",
        )
        worker.start()
        self.workers.append(worker)
        return worker

    def kill_gateway(self) -> None:
        self.gateway.kill()
        self.retired.append(self.gateway)

    def kill_worker(self, index: int = 0) -> None:
        worker = self.workers.pop(index)
        worker.kill()
        self.retired.append(worker)

    def logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every live process, all at once, then wait; exit codes by name."""
        live = [p for p in (self.gateway, *self.workers) if p is not None and p.alive]
        for process in live:
            process.terminate()
        return {process.name: process.stop() for process in live}
