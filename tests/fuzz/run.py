"""`python -m tests.fuzz [--requests N]` (`make fuzz`): Schemathesis against a running
gateway's /openapi.json (SPEC §8).

Starts its own database, AMQP prefix, SMTP sink, gateway and `worker all` processes,
creates a tenant (its API key fills every `{apiKey}`) and a bearer token with the users:*
scopes, then sends at least N generated requests (valid and invalid data) to every
operation and checks each answer with Schemathesis's `not_a_server_error` and
`response_schema_conformance`. Failures are described on stderr, with a curl command to
replay them. The last line on stdout is

    fuzz_requests=N server_errors=N schema_violations=N

and the exit status is 0 only when both error counts are 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.conftest import wait_ready

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REQUESTS = 5000
SHOW_FAILURES = 10


def progress(message: str) -> None:
    print(f"fuzz: {message}", file=sys.stderr, flush=True)


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    by_operation: Counter = field(default_factory=Counter)
    shown: int = 0

    def line(self) -> str:
        return (
            f"fuzz_requests={self.requests} server_errors={self.server_errors} "
            f"schema_violations={self.schema_violations}"
        )

    def failure(self, kind: str, case, response, detail: str) -> None:
        if self.shown >= SHOW_FAILURES:
            return
        self.shown += 1
        status = getattr(response, "status_code", "no answer")
        body = getattr(response, "text", "")[:500]
        progress(
            f"{kind}: {case.method} {case.formatted_path} -> {status}\n  {detail[:800]}\n"
            f"  body: {body}\n  replay: {case.as_curl_command()}"
        )


# --- the system under test --------------------------------------------------------------


class System:
    """Database, AMQP prefix, SMTP sink, gateway and workers of one run."""

    def __init__(self, log_dir: Path) -> None:
        from service.sealing import generate_key_pair
        from tests.conftest import AMQP_URL, POSTGRES_URL, free_port

        run_id = uuid.uuid4().hex[:10]
        self.database_url = f"{POSTGRES_URL}/registrar_fuzz_{run_id}"
        self.amqp_url = AMQP_URL
        self.prefix = f"fuzz_{run_id}"
        self.port = free_port()
        self.metrics_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []
        self.mailbox = None
        public, private = generate_key_pair()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "REGISTRAR_DATABASE_URL": self.database_url,
            "REGISTRAR_AMQP_URL": self.amqp_url,
            "REGISTRAR_AMQP_PREFIX": self.prefix,
            "REGISTRAR_PUBLIC_URL": self.base_url,
            "REGISTRAR_SEAL_PUBLIC_KEY": public,
            "REGISTRAR_SEAL_PRIVATE_KEY": private,
            # Thousands of requests from one address and for one tenant, on purpose.
            "REGISTRAR_RATE_LIMIT_BURST": "1000000",
            "REGISTRAR_TENANT_RATE_LIMIT_BURST": "1000000",
            # Valid registrations are decided by the workers; never wait long for one.
            "REGISTRAR_REGISTER_WAIT_S": "2",
        }

    def registrar(self, *args: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)

    def start(self) -> None:
        from service import db
        from tests.conftest import Mailbox

        asyncio.run(db.migrate(self.database_url))
        self.mailbox = Mailbox()
        self.mailbox.controller.start()
        self.env["REGISTRAR_SMTP_URL"] = f"smtp://127.0.0.1:{self.mailbox.port}"
        commands = {
            "gateway": (["gateway", "--host", "127.0.0.1", "--port", str(self.port)], {}),
            "workers": (
                ["worker", "all"],
                {
                    "REGISTRAR_METRICS_PORT": str(self.metrics_port),
                    "REGISTRAR_METRICS_HOST": "127.0.0.1",
                },
            ),
        }
        for name, (argv, extra) in commands.items():
            log = (self.log_dir / f"{name}.log").open("w")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cli.main", *argv],
                    env={**self.env, **extra},
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_ready(f"{self.base_url}/readyz", self.processes)
        wait_ready(f"http://127.0.0.1:{self.metrics_port}/healthz", self.processes)

    def stop(self) -> list[int | None]:
        from tests.conftest import drop_database, drop_topology

        codes: list[int | None] = []
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(timeout=10))
        if self.mailbox is not None:
            self.mailbox.controller.stop()

        async def clean() -> None:
            import aio_pika

            connection = await aio_pika.connect_robust(self.amqp_url)
            try:
                await drop_topology(connection, self.prefix)
            finally:
                await connection.close()
            await drop_database(self.database_url)

        asyncio.run(clean())
        return codes


# --- fuzzing ----------------------------------------------------------------------------


def judge(case, response, tally: Tally) -> None:
    """Count one answer and what Schemathesis's two checks find wrong with it."""
    from schemathesis.checks import Failure, FailureGroup, not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    tally.requests += 1
    tally.by_operation[f"{case.method} {case.path}"] += 1
    for check, kind in (
        (not_a_server_error, "server error"),
        (response_schema_conformance, "schema violation"),
    ):
        try:
            case.validate_response(response, checks=[check])
        except (Failure, FailureGroup) as exc:  # counted and described, not raised
            if kind == "server error":
                tally.server_errors += 1
            else:
                tally.schema_violations += 1
            tally.failure(kind, case, response, str(exc))


def fuzz(base_url: str, api_key: str, token: str, budget: int, seed: int | None) -> Tally:
    """At least `budget` generated requests spread over every operation of the document."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    tally = Tally()
    session = requests.Session()

    def send(case) -> None:
        try:
            response = case.call(base_url=base_url, session=session, timeout=30)
        except requests.RequestException as exc:  # the gateway dropped the connection
            tally.requests += 1
            tally.server_errors += 1
            tally.failure("no answer", case, None, repr(exc))
            return
        judge(case, response, tally)

    def strategy_for(operation, mode):
        fixed_path = {"apiKey": api_key} if "{apiKey}" in operation.path else None
        bearer = "security" in operation.definition.raw
        headers = {"Authorization": f"Bearer {token}"} if bearer else None
        return operation.as_strategy(mode, path_parameters=fixed_path, headers=headers)

    def run(strategy, examples: int) -> None:
        @hypothesis_settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=seed is not None,
        )
        @given(case=strategy)
        def test(case) -> None:
            send(case)

        test()

    plans: list[tuple[str, Callable]] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            plans.append(
                (
                    f"{operation.method.upper()} {operation.path} {mode.value}",
                    strategy_for(operation, mode),
                )
            )
    exhausted: set[str] = set()
    for _round in range(50):
        remaining = budget - tally.requests
        live = [plan for plan in plans if plan[0] not in exhausted]
        if remaining <= 0 or not live:
            break
        per_plan = max(1, math.ceil(remaining / len(live)))
        for name, strategy in live:
            before = tally.requests
            try:
                run(strategy, per_plan)
            except Exception as exc:  # e.g. nothing to generate negatively for /healthz
                progress(f"{name}: nothing more to generate ({type(exc).__name__})")
                exhausted.add(name)
            if tally.requests - before < per_plan // 4:
                exhausted.add(name)  # a small input space: more rounds add little
        progress(f"round {_round + 1}: {tally.line()}")
    for name, count in sorted(tally.by_operation.items()):
        progress(f"  {count:6d}  {name}")
    return tally


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="at least this many requests"
    )
    parser.add_argument("--seed", type=int, help="derandomize the generated data")
    parser.add_argument("--log-dir", type=Path, help="keep the processes' logs here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="registrar-fuzz-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    system = System(log_dir)
    tally = Tally()
    try:
        progress(f"starting gateway and workers (logs in {log_dir})")
        system.start()
        tenant = system.registrar(
            "tenant", "create", "Fuzz", "--activation-url-prefix", "https://app.example.com/"
        )
        # Every scope a bearer route asks for, so that the fuzzer gets past the 403s.
        scopes = ("users:invite", "users:read", "users:write", "webhooks:manage")
        token = system.registrar(
            "token", "create", "--tenant", tenant["id"], *(f"--scope={s}" for s in scopes)
        )
        with contextlib.redirect_stdout(sys.stderr):  # Hypothesis' notes: stdout has one line
            tally = fuzz(
                system.base_url, tenant["apiKey"], token["token"], args.requests, args.seed
            )
    finally:
        codes = system.stop()
        if any(code != 0 for code in codes):
            progress(f"processes exited with {codes}, see {log_dir}")
            tally.server_errors += sum(1 for code in codes if code != 0)
        print(tally.line(), flush=True)
    ok = tally.requests >= args.requests and tally.server_errors == tally.schema_violations == 0
    return 0 if ok else 1
