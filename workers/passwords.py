"""Password hashing for the workers: argon2id, off the event loop, timed."""

from __future__ import annotations

import asyncio
import time

from argon2 import PasswordHasher

from service import metrics


async def hash_password(hasher: PasswordHasher, password: str) -> str:
    """argon2id is deliberately slow (tens of ms): run it in a thread, not on the loop."""
    started = time.perf_counter()
    hashed = await asyncio.to_thread(hasher.hash, password)
    metrics.HASH_SECONDS.observe(time.perf_counter() - started)
    return hashed
