"""How many CPU threads torch uses: the cores this process may really run on, fewer when others are busy.

Why not simply os.cpu_count(): torch's intra-op threads meet at a barrier after every operator, so one thread
that shares its core with another busy process holds up all the others (measured: a training step 3-8x
slower, not 2x, with one of two cores taken). So the default counts
  - the cores this process may run on (sched_getaffinity: taskset, cpusets),
  - capped by the cgroup CPU quota (cpu.max / cfs_quota_us: containers, systemd limits),
  - minus the cores other processes keep busy right now (a 0.2 s sample of /proc/stat, our own use left out;
    processes of lower priority, `nice`d ones, do not count: they give the cores back).
`--threads N` (any command that runs a model), CHATFORGE_THREADS=N or OMP_NUM_THREADS=N choose the count instead.
Load changes while a command runs (a build starts, a browser wakes up): Follow re-measures it from the time
the command's loop already spends (no sleep) every two seconds, and moves torch's count to match; the training
loop and the decode loop call it once per step. An explicit count is never changed.
Standard library only: the CLI imports this before torch.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

ENV = "CHATFORGE_THREADS"  # set by `--threads`; read by set_threads() in every stage (and child processes)


def affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_quota(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by the cgroup quota (cgroup v2 cpu.max or v1 cfs_quota_us/cfs_period_us), None = no limit."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    cores = affinity_cores()
    quota = cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 0.05)))  # 1.5 CPUs of quota: 2 threads still fit
    return max(1, cores)


def _cpu_times(stat: str | Path = "/proc/stat") -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat. Time of processes running at a lower
    priority than this one (a higher nice value: backups, indexers, `nice make`) is not busy: the scheduler
    gives our threads their cores back at once (CFS weight 15 for nice 19 against 1024 for nice 0), so they do
    not stall our barriers."""
    try:
        fields = [int(x) for x in Path(stat).read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    busy = total - idle
    if _niceness() == 0:  # our own time is in "user"; "nice" is only processes of lower priority
        busy -= fields[1]
    return busy, total


def _niceness() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


def _own_jiffies() -> int:
    try:
        f = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime of this process
    except (OSError, ValueError, IndexError):
        return 0


def busy_cores(interval: float = 0.2) -> float:
    """Cores kept busy by other processes right now (machine-wide; 0.0 when it cannot be measured)."""
    a, own_a = _cpu_times(), _own_jiffies()
    if a is None:
        return 0.0
    time.sleep(interval)
    return _others(a, own_a, _cpu_times(), _own_jiffies())


def _others(a, own_a: int, b, own_b: int) -> float:
    """Cores other processes kept busy between two (machine, own) samples; 0.0 when it cannot be told."""
    if a is None or b is None or b[1] <= a[1]:
        return 0.0
    busy = max(0, (b[0] - a[0]) - (own_b - own_a))
    return busy / (b[1] - a[1]) * (os.cpu_count() or 1)


def explicit_threads(requested: int | str | None = None) -> int | None:
    """The count asked for (--threads, CHATFORGE_THREADS, OMP_NUM_THREADS), None when chatforge chooses."""
    for value in (requested, os.environ.get(ENV), os.environ.get("OMP_NUM_THREADS")):
        if value not in (None, "", "auto"):
            try:
                return max(1, int(value))
            except ValueError:
                pass
    return None


def _free(cores: int, busy: float) -> int:
    # A core counts as taken when another process uses more than ~half of it.
    return max(1, min(cores, cores - int(busy + 0.4)))


def choose_threads(requested: int | str | None = None) -> int:
    """The thread count: the one asked for (--threads, CHATFORGE_THREADS, OMP_NUM_THREADS), else the available
    cores minus those busy with other work (at least 1)."""
    explicit = explicit_threads(requested)
    if explicit is not None:
        return explicit
    cores = available_cores()
    return 1 if cores == 1 else _free(cores, busy_cores())


class Follow:
    """Keeps torch's thread count matched to the load while a loop runs: poll() once per step; every `interval`
    seconds it measures the cores other processes used since the last measurement (/proc/stat minus this
    process's own time: no sleep) and, when the free count differs from the current one, sets it. Does nothing
    when the count was given explicitly, cannot be measured, or `enabled` is False."""

    def __init__(self, interval: float = 2.0, *, requested: int | str | None = None, enabled: bool = True):
        self.interval = interval
        self.enabled = enabled and explicit_threads(requested) is None and available_cores() > 1
        self._mark()

    def _mark(self) -> None:
        self.t, self.machine, self.own = time.monotonic(), _cpu_times(), _own_jiffies()

    def poll(self) -> int | None:
        """The new thread count when it changed, else None."""
        if not self.enabled or time.monotonic() - self.t < self.interval:
            return None
        before, own_before = self.machine, self.own
        self._mark()
        if before is None or self.machine is None or self.machine[1] <= before[1]:
            return None  # not measurable: keep the count
        n = _free(available_cores(), _others(before, own_before, self.machine, self.own))
        import torch

        if n == torch.get_num_threads():
            return None
        torch.set_num_threads(n)
        return n


def set_threads(requested: int | str | None = None) -> int:
    """Give torch's intra-op pool choose_threads() threads; returns the count."""
    import torch

    n = choose_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def parse_threads(s: str) -> int | str:
    """--threads: a count >= 1, or 'auto'."""
    import argparse

    if s == "auto":
        return s
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 1 or 'auto', got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v
