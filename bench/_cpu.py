"""CPU time of the processes a benchmark involves, from /proc (Linux).

Wall-clock throughput on a shared 2-core machine drifts; CPU seconds per request of each
process do not, so they say where the time goes.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0.0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def pids_of(command: str) -> list[int]:
    """Processes whose executable name (comm) is `command`, e.g. postgres or beam.smp."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU seconds spent by named groups of processes between start() and stop()."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        return {name: sum(map(cpu_seconds, pids)) for name, pids in self.groups.items()}

    def start(self) -> None:
        # postgres backends come and go: count the ones alive now and at the end.
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        self.spent = {name: after[name] - self._before.get(name, 0.0) for name in after}
        return self.spent
