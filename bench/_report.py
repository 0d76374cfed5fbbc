"""Shared by the benchmarks: a free port, and the table of medians and ratios."""

from __future__ import annotations

import socket
import statistics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def print_ratios(title: str, rates: dict[str, list[float]], *, unit: str) -> None:
    """Median rate of each variant and its ratio to the first (the baseline)."""
    medians = {label: statistics.median(values) for label, values in rates.items()}
    baseline = next(iter(medians.values()))
    width = max(len(label) for label in medians)
    print(title)
    for label, median in medians.items():
        print(f"  {label:<{width}} {median:9.1f} {unit}   x{median / baseline:.2f}")
