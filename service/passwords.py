"""Password hashing and checking: argon2id, off the event loop, on bounded pools.

Workers hash new passwords (HashPool); the gateway checks presented ones at login, before
a password change and before an account is deleted (PasswordChecker).

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

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from service import metrics
from service.errors import ServiceUnavailable
from service.settings import Settings


def password_hasher(settings: Settings) -> PasswordHasher:
    """argon2id with the configured parameters (OWASP's by default)."""
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


def lower_priority(nice: int):
    """A thread initializer that gives the thread niceness `nice` (0: leave it)."""

    def initialize() -> None:
        if nice > 0:
            # On Linux each thread is a task with its own niceness; elsewhere (or without
            # permission) the thread simply keeps the process's priority.
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

    return initialize


class HashPool:
    """A PasswordHasher with its own threads."""

    def __init__(self, hasher: PasswordHasher, *, threads: int, nice: int = 0) -> None:
        self.hasher = hasher
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=lower_priority(nice)
        )

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


class ChecksBusy(ServiceUnavailable):
    slug, title = "busy", "Too many password checks in progress, retry later"
    retry_after_s = 1


class PasswordChecker:
    """Verifies passwords in the gateway without letting a login storm starve it.

    At most `threads` argon2 verifications run at once, on threads of their own (argon2
    releases the GIL, so the event loop keeps serving registrations on another core), and
    at most `queue` more wait for a thread; any further check is refused at once with 503
    (ChecksBusy) instead of growing an unbounded backlog behind wrong-password floods.

    Unknown users are checked against a dummy hash made with the same parameters, so a
    login for a name that does not exist takes as long as one with a wrong password.
    """

    def __init__(self, hasher: PasswordHasher, *, threads: int, queue: int, nice: int = 0) -> None:
        self.hasher = hasher
        # At a lower priority (REGISTRAR_PASSWORD_CHECK_NICE), the verifications yield the
        # core to the event loop: the door keeps more of its rate during a login storm
        # (make bench-login).
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="verify", initializer=lower_priority(nice)
        )
        self._admitted = 0
        self._limit = threads + queue
        self._dummy_hash = hasher.hash("registrar-dummy-password")

    @property
    def in_progress(self) -> int:
        return self._admitted

    def ensure_room(self) -> None:
        """ChecksBusy (503) now when a check would be refused: call it before any other
        work for the request (a refused login should not cost a database query)."""
        if self._admitted >= self._limit:
            metrics.PASSWORD_CHECKS.labels("refused").inc()
            raise ChecksBusy("too many password checks in progress; retry in a second")

    async def _run(self, function, *args):
        self.ensure_room()
        self._admitted += 1
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            self._admitted -= 1
            metrics.HASH_SECONDS.observe(time.perf_counter() - started)

    def _verify(self, stored_hash: str, password: str) -> tuple[bool, bool]:
        try:
            self.hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):  # a mismatch, or a damaged hash
            return False, False
        return True, self.hasher.check_needs_rehash(stored_hash)

    async def verify(self, stored_hash: str | None, password: str) -> tuple[bool, bool]:
        """(matches, needs_rehash) for `password` against `stored_hash`; None (no such
        user) is checked against the dummy hash and never matches."""
        if stored_hash is None:
            await self._run(self._verify, self._dummy_hash, password)
            metrics.PASSWORD_CHECKS.labels("unknown").inc()
            return False, False
        ok, rehash = await self._run(self._verify, stored_hash, password)
        metrics.PASSWORD_CHECKS.labels("match" if ok else "mismatch").inc()
        return ok, rehash

    async def hash(self, password: str) -> str:
        """A new hash with the current parameters (re-hash at login)."""
        return await self._run(self.hasher.hash, password)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
