"""Shared by the benchmarks: a free port, percentiles, and the table of medians and ratios."""

from __future__ import annotations

import socket
import statistics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quantile_ms(values: list[float], q: int) -> float:
    """The q-th percentile of `values` (seconds), in ms; nan without values."""
    if not values:
        return float("nan")
    if len(values) < 2:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def print_ratios(title: str, rates: dict[str, list[float]], *, unit: str) -> None:
    """Median rate of each variant and its ratio to the first (the baseline)."""
    medians = {label: statistics.median(values) for label, values in rates.items()}
    baseline = next(iter(medians.values()))
    width = max(len(label) for label in medians)
    print(title)
    for label, median in medians.items():
        print(f"  {label:<{width}} {median:9.1f} {unit}   x{median / baseline:.2f}")
