"""Time-ordered ids (UUIDv7, RFC 9562) for the rows of tables that grow.

A random UUIDv4 key puts every insert on a random page of its index; with millions of
rows those pages are mostly not in memory, and each one first written after a checkpoint
costs a full page in the WAL. A UUIDv7 starts with the millisecond it was made, so new
keys land on the index's right-most pages, like a sequence, while the 74 random bits
keep it unguessable and unique across processes without coordination.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RANDOM = (1 << 74) - 1  # rand_a (12 bits) and rand_b (62 bits)


def uuid7() -> uuid.UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, version, 74 random bits, variant."""
    millis = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big") & _RANDOM
    rand_a, rand_b = random_bits >> 62, random_bits & ((1 << 62) - 1)
    value = (millis & ((1 << 48) - 1)) << 80 | _VERSION | rand_a << 64 | _VARIANT | rand_b
    return uuid.UUID(int=value)
