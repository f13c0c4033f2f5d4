"""Helpers for the cgroup tests: processes that start working only once they are in
a cgroup, and CPU share measured from the cgroup's own usage counter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from minirun.cgroups import Cgroup

PREFIX = f"mrtest-{os.getpid()}-"     # every test cgroup's name starts with this
TEST_ROOT = f"minirun-test-{os.getpid()}"   # this run's cgroup root (see conftest.py)

_children: list[subprocess.Popen] = []


def reap() -> None:
    for proc in _children:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _children.clear()


def spawn(cg: Cgroup, code: str, **kwargs) -> subprocess.Popen:
    """Run Python ``code`` in a child that starts working only once it is in ``cg``."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(1)\n" + code],
                            stdin=subprocess.PIPE, **kwargs)
    _children.append(proc)
    cg.add_process(proc.pid)
    proc.stdin.write(b"go")
    proc.stdin.close()
    return proc


@dataclass
class CpuShare:
    used: float          # CPUs the cgroup used (its own usage counter / wall time)
    throttled: int       # periods the kernel throttled it
    waited: float        # time ``pid`` was runnable but not running, throttled or not


def cpu_share(cg: Cgroup, seconds: float, pid: int) -> CpuShare:
    """Measure the cgroup over ``seconds``; ``waited`` (/proc/PID/schedstat) goes into
    failure messages, to tell a quota's throttling from a busy machine."""
    def sample() -> tuple[float, int, int, int]:
        stats = cg.stats()["cpu"]
        with open(f"/proc/{pid}/schedstat") as fh:
            wait = int(fh.read().split()[1])
        throttled = stats.get("throttling", {}).get("throttled_periods", 0)
        return time.monotonic(), stats["usage"]["total"], throttled, wait

    t0, used0, thr0, wait0 = sample()
    time.sleep(seconds)
    t1, used1, thr1, wait1 = sample()
    wall = t1 - t0
    return CpuShare((used1 - used0) / 1e9 / wall, thr1 - thr0, (wait1 - wait0) / 1e9 / wall)
