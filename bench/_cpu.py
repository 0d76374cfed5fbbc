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
    """CPU seconds spent by named groups of processes between start() and stop().

    Only processes alive at both ends count: one that started or ended in between
    (another client's PostgreSQL backend, say) would otherwise add its whole life.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._before: dict[int, float] = {}
        self.spent: dict[str, float] = {}

    def _sample(self) -> dict[int, float]:
        pids = {pid for group in self.groups.values() for pid in group}
        return {pid: cpu_seconds(pid) for pid in pids}

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()

        def delta(pid: int) -> float:
            if after.get(pid, 0.0) == 0.0 or pid not in self._before:
                return 0.0
            return after[pid] - self._before[pid]

        self.spent = {name: sum(map(delta, pids)) for name, pids in self.groups.items()}
        return self.spent
