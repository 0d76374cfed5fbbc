"""Hashing runs on exactly REGISTRAR_HASH_THREADS threads, at the niceness asked for."""

from __future__ import annotations

import asyncio
import os
import threading

from argon2 import PasswordHasher, Type

from service.passwords import HashPool, hash_password

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)


class Recording(PasswordHasher):
    """Notes the thread and its niceness for each hash."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        self.seen: list[tuple[str, int]] = []

    def hash(self, password, *, salt=None) -> str:
        niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.seen.append((threading.current_thread().name, niceness))
        return super().hash(password, salt=salt)


async def test_hashes_use_only_the_pools_threads_at_the_requested_niceness() -> None:
    recording = Recording()
    pool = HashPool(recording, threads=2, nice=5)
    try:
        hashes = await asyncio.gather(*(hash_password(pool, f"pw{n}") for n in range(12)))
    finally:
        pool.close()
    assert all(CHEAP.verify(h, f"pw{n}") for n, h in enumerate(hashes))
    threads = {name for name, _ in recording.seen}
    assert len(threads) <= 2 and all(name.startswith("argon2") for name in threads)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0  # loop thread
    assert {niceness for _, niceness in recording.seen} == {5}  # the threads only


def test_the_default_is_one_thread_per_core() -> None:
    from service.settings import Settings

    assert Settings().hash_threads == (os.cpu_count() or 1)


def test_hashing_yields_to_the_gateway_by_default() -> None:
    from service.settings import Settings

    assert Settings().hash_nice == 10
