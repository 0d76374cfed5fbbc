"""CPU time of the processes a benchmark involves, from /proc (Linux).

Wall-clock throughput on a shared 2-core machine drifts; CPU seconds per request of each
process do not, so they say where the time goes.
"""

from __future__ import annotations

import contextlib
import os

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int, tid: int | None = None) -> float | None:
    """utime + stime of a process (all its threads) or of one of its threads, seconds."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def threads_of(pid: int) -> dict[int, float]:
    """tid -> CPU seconds of every thread of `pid`."""
    out = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            value = cpu_of(pid, int(tid))
            if value is not None:
                out[int(tid)] = value
    return out


def pids_named(comm: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == comm:
                    out.append(int(entry))
        except OSError:
            continue
    return out


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
        return {pid: cpu_of(pid) or 0.0 for pid in pids}

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
