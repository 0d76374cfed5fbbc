"""OutcomeWaiter: woken by notifications, bounded in number (REGISTRAR_MAX_WAITERS)."""

from __future__ import annotations

import asyncio
import time

from service.outcomes import OutcomeWaiter


async def test_a_notification_wakes_the_waiter_before_the_poll() -> None:
    waiter = OutcomeWaiter()
    decided: list[str] = []

    async def check() -> str | None:
        return decided[0] if decided else None

    task = asyncio.create_task(waiter.wait_for("k", check, timeout=5))
    await asyncio.sleep(0.05)
    assert waiter.waiting == 1
    decided.append("done")
    waiter.notify("k")
    assert await asyncio.wait_for(task, 0.5) == "done"
    assert waiter.waiting == 0


async def test_beyond_the_limit_a_caller_gets_none_at_once_without_checking() -> None:
    waiter = OutcomeWaiter(limit=1)
    checks: list[str] = []

    def checker(name: str):
        async def check() -> None:
            checks.append(name)

        return check

    first = asyncio.create_task(waiter.wait_for("a", checker("first"), timeout=5))
    await asyncio.sleep(0.05)
    assert waiter.full
    started = time.monotonic()
    assert await waiter.wait_for("b", checker("second"), timeout=5) is None
    assert time.monotonic() - started < 0.1
    assert "second" not in checks
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert waiter.waiting == 0 and not waiter.full  # a cancelled waiter frees its place


async def test_a_limit_of_zero_never_waits() -> None:
    waiter = OutcomeWaiter(limit=0)

    async def check() -> str:
        raise AssertionError("must not be called")

    assert await waiter.wait_for("a", check, timeout=5) is None
