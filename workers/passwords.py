"""Password hashing for the workers: argon2id, off the event loop, on a bounded pool.

argon2id is deliberately slow (tens of ms of a core each). The hashes run on a fixed
number of threads (`REGISTRAR_HASH_THREADS`, default: the number of cores) so that a
queue of registrations never takes more cores than that, and at a lower OS priority
(`REGISTRAR_HASH_NICE`, default 10) so that a gateway on the same machine keeps answering
while the workers hash. argon2-cffi releases the GIL while it
hashes, so the threads really run in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher

from service import metrics


class HashPool:
    """A PasswordHasher with its own threads."""

    def __init__(self, hasher: PasswordHasher, *, threads: int, nice: int = 0) -> None:
        self.hasher = hasher
        self._nice = nice
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=self._lower_priority
        )

    def _lower_priority(self) -> None:
        if self._nice > 0:
            # On Linux each thread is a task with its own niceness; elsewhere (or without
            # permission) hashing simply keeps the process's priority.
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.hasher.hash, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


Hasher = PasswordHasher | HashPool


async def hash_password(hasher: Hasher, password: str) -> str:
    """argon2id off the event loop: on the pool's threads, or a default thread."""
    started = time.perf_counter()
    if isinstance(hasher, HashPool):
        hashed = await hasher.hash(password)
    else:
        hashed = await asyncio.to_thread(hasher.hash, password)
    metrics.HASH_SECONDS.observe(time.perf_counter() - started)
    return hashed
