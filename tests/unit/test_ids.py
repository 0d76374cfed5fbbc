"""UUIDv7 ids: the version and variant of RFC 9562, ordered by time, never repeated."""

from __future__ import annotations

import time
import uuid

from schemas.ids import uuid7


def test_a_uuid7_has_version_7_the_rfc_variant_and_its_millisecond():
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones_and_do_not_repeat():
    first = [uuid7() for _ in range(1000)]
    time.sleep(0.002)
    later = [uuid7() for _ in range(1000)]
    assert max(first) < min(later)
    assert len(set(first + later)) == 2000
