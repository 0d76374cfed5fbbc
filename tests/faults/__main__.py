"""`python -m tests.faults [SCENARIO ...]` — run fault scenarios, print one line each.

Progress and failure details go to stderr; stdout gets only the result lines, last:

    scenario=NAME accepted=N registered=N events=N emails=N lost=N duplicated=N stuck=N

Exit status: 0 when every scenario ran with accepted > 0, no harness errors and
lost = duplicated = stuck = 0; 1 when one fell short; 2 when one could not be run at all
(its line is then missing); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
import traceback

from tests.faults.audit import Result
from tests.faults.common import progress
from tests.faults.harness import Environment, Options, run_scenario
from tests.faults.scenarios import SCENARIOS
from tests.faults.traffic import Plan

# `make faults` must end within 20 minutes; drains are shortened to fit.
DEFAULT_BUDGET_S = 19 * 60
# Roughly what a scenario needs besides its drain: start-up, stream, fault, shutdown.
SCENARIO_OVERHEAD_S = 60
SHOW_BAD_ITEMS = 5


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a run (traffic, fault timing, drain, processes); `make cluster`
    shares them."""
    parser.add_argument("--register-rate", type=float, default=10.0, help="per second")
    parser.add_argument("--invite-rate", type=float, default=3.0, help="per second")
    parser.add_argument("--duration", type=float, default=30.0, help="stream seconds")
    parser.add_argument("--fault-at", type=float, help="seconds into the stream")
    parser.add_argument("--outage", type=float, default=30.0, help="*_outage seconds")
    parser.add_argument("--broker-down", type=float, default=5.0, help="broker_restart s")
    parser.add_argument("--client-deadline", type=float, default=60.0, help="retry for s")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--stall", type=float, default=60.0, help="drain gives up after")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="whole run, s")
    parser.add_argument("--log-level", default="INFO", help="of the registrar processes")
    parser.add_argument(
        "--process-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the registrar processes (repeatable)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="also when all pass")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults",
        description="Black-box fault injection against real registrar processes.",
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)}"
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    args.scenarios = args.scenarios or list(SCENARIOS)
    check_process_env(parser, args)
    return args


def check_process_env(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if any("=" not in setting for setting in args.process_env):
        parser.error("--process-env takes NAME=VALUE")


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        plan=Plan(
            register_rate=args.register_rate,
            invite_rate=args.invite_rate,
            duration_s=args.duration,
            client_deadline_s=args.client_deadline,
        ),
        fault_at_s=args.fault_at,
        outage_s=args.outage,
        broker_down_s=args.broker_down,
        drain_timeout_s=args.drain_timeout,
        stall_s=args.stall,
        settle_s=args.settle,
        log_level=args.log_level,
        process_env=tuple(tuple(s.split("=", 1)) for s in args.process_env),
    )


def within_budget(options: Options, seconds_left: float, scenarios_left: int) -> Options:
    """Shorten the drain so that the scenarios still to come get their share of time."""
    reserve = SCENARIO_OVERHEAD_S * scenarios_left + options.plan.duration_s
    drain = max(30.0, min(options.drain_timeout_s, seconds_left - reserve))
    return dataclasses.replace(options, drain_timeout_s=drain)


def report_failure(result: Result) -> None:
    """What an engineer needs first: counts, the first bad items, where the logs are."""
    progress(f"{result.name}: FAILED {result.line()}")
    for item in result.harness_errors[:SHOW_BAD_ITEMS]:
        progress(f"  harness error: {item.describe()}: {item.harness_error}")
    for item, witnesses in result.bad()[:SHOW_BAD_ITEMS]:
        flags = [name for name in ("lost", "duplicated", "stuck") if getattr(witnesses, name)]
        progress(f"  {'/'.join(flags)}: {item.describe()}: {witnesses.describe()}")
    if not result.accepted:
        progress("  nothing was accepted: the scenario proved nothing")
    for note in [*result.process_failures, *result.notes]:
        progress(f"  {note}")


async def run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    started = loop.time()
    options = options_from(args)
    results: list[Result] = []
    crashed: list[str] = []
    env = Environment(options)
    finished = False
    try:
        async with env:
            for index, name in enumerate(args.scenarios):
                left = args.budget - (loop.time() - started)
                budgeted = within_budget(options, left, len(args.scenarios) - index - 1)
                try:
                    results.append(await run_scenario(env, SCENARIOS[name], budgeted))
                    progress(f"{name}: done: {results[-1].line()}")
                except Exception:
                    progress(f"{name}: could not be run:\n{traceback.format_exc()}")
                    crashed.append(name)
        finished = True
    finally:
        failed = not finished or crashed or not all(result.ok for result in results)
        for result in results:
            if not result.ok:
                report_failure(result)
        odd_exits = any(result.process_failures for result in results)
        if failed or odd_exits or args.keep_logs:
            progress(f"logs kept under {env.root}")
        else:
            env.remove_logs()
        # Last, and also when interrupted: the lines of the scenarios that completed.
        for result in results:
            print(result.line(), flush=True)
    return 2 if crashed else (1 if failed else 0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The harness's own AMQP connection reconnects through broker_restart by design;
    # aio-pika's tracebacks about it would bury the progress lines.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; processes stopped and services restored")
        return 130


if __name__ == "__main__":
    sys.exit(main())
