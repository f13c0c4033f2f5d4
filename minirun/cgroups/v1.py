"""cgroup v1: one hierarchy per controller (or per group of co-mounted controllers).

Each controller has its own directory tree and its own files, documented in
the kernel's Documentation/admin-guide/cgroup-v1/ (cpusets.rst, memory.rst,
freezer-subsystem.rst, hugetlb.rst, pids.rst, devices.rst, blkio-controller.rst)
and, for the CFS bandwidth files, Documentation/scheduler/sched-bwc.rst.

Functions here take ``dirs``: role -> this container's directory in the
hierarchy that serves the role (see layout.py).
"""

from __future__ import annotations

import os
import time

from minirun.cgroups import devices
from minirun.cgroups.files import (
    Write,
    read_file,
    read_int,
    read_keyed,
    read_optional,
    write_file,
)
from minirun.config.resources import Resources
from minirun.errors import MinirunError

USER_HZ = 100           # cpuacct.stat counts in clock ticks (sysconf(_SC_CLK_TCK))
FREEZE_TIMEOUT = 5.0    # seconds to wait for FREEZING to become FROZEN
PARENT_CPUSET = "a cpuset must stay within its parent's cpuset.cpus and cpuset.mems"


def copy_cpuset(path: str) -> None:
    """A new v1 cpuset starts with empty cpuset.cpus and cpuset.mems, and the kernel
    refuses to add a process to it (ENOSPC) until both are set: copy the parent's."""
    parent = os.path.dirname(path)
    for name in ("cpuset.cpus", "cpuset.mems"):
        write_file(os.path.join(path, name), read_file(os.path.join(parent, name)))


def writes(res: Resources, dirs: dict[str, str], where: str) -> list[Write]:
    """The writes that apply ``res`` to the v1 hierarchies in ``dirs``, in order."""
    out: list[Write] = []

    def add(role: str, key: str, name: str, value: object, missing: str | None = None,
            refused: str | None = None) -> None:
        if value is not None and role in dirs:
            out.append(Write(f"{where}.{key}", os.path.join(dirs[role], name), str(value),
                             missing, refused))

    if res.cpu is not None:
        cpu = res.cpu
        add("cpu", "cpu.shares", "cpu.shares", cpu.shares)
        # period before quota: the kernel checks quota against the period it has now
        add("cpu", "cpu.period", "cpu.cfs_period_us", cpu.period)
        add("cpu", "cpu.quota", "cpu.cfs_quota_us", cpu.quota)
        add("cpu", "cpu.burst", "cpu.cfs_burst_us", cpu.burst,
            "this kernel has no cpu.cfs_burst_us (CFS burst came in Linux 5.14)")
        no_rt = "this kernel has no realtime group scheduling (CONFIG_RT_GROUP_SCHED)"
        add("cpu", "cpu.realtimePeriod", "cpu.rt_period_us", cpu.realtime_period, no_rt)
        add("cpu", "cpu.realtimeRuntime", "cpu.rt_runtime_us", cpu.realtime_runtime, no_rt,
            "every ancestor's cpu.rt_runtime_us must leave room for it, and minirun gives "
            "its cgroup root none")
        add("cpu", "cpu.idle", "cpu.idle", cpu.idle, "this kernel has no cpu.idle (Linux 5.15+)")
        add("cpuset", "cpu.cpus", "cpuset.cpus", cpu.cpus, None, PARENT_CPUSET)
        add("cpuset", "cpu.mems", "cpuset.mems", cpu.mems, None, PARENT_CPUSET)
    if res.memory is not None and "memory" in dirs:
        _memory_writes(res, dirs["memory"], where, add)
    add("pids", "pids.limit", "pids.max", "max" if res.pids_limit == -1 else res.pids_limit)
    for i, h in enumerate(res.hugepage_limits):
        add("hugetlb", f"hugepageLimits[{i}].limit", f"hugetlb.{h.page_size}.limit_in_bytes",
            h.limit, f"the hugetlb controller has no {h.page_size} pages here")
    if res.block_io_weight is not None and "blkio" in dirs:
        # blkio.weight belongs to the old CFQ scheduler; with BFQ the file is blkio.bfq.weight
        name = "blkio.weight"
        if not os.path.exists(os.path.join(dirs["blkio"], name)):
            name = "blkio.bfq.weight"
        add("blkio", "blockIO.weight", name, res.block_io_weight,
            "neither blkio.weight nor blkio.bfq.weight exists: no disk uses CFQ or BFQ")
    for i, (name, line) in enumerate(devices.v1_lines(res.devices) if res.devices else []):
        key = f"devices[{i}]" if i < len(res.devices) else "devices"
        add("devices", key, name, line)
    return out


def _memory_writes(res: Resources, path: str, where: str, add) -> None:
    mem = res.memory
    swap_file = os.path.join(path, "memory.memsw.limit_in_bytes")
    limit = ("memory", "memory.limit", "memory.limit_in_bytes", mem.limit)
    swap = None
    growing = False
    if mem.swap is not None and (mem.swap != -1 or os.path.exists(swap_file)):
        swap = ("memory", "memory.swap", "memory.memsw.limit_in_bytes", mem.swap,
                "memory.memsw.limit_in_bytes does not exist: the kernel does not account "
                "swap (CONFIG_MEMCG_SWAP, boot with swapaccount=1)")
        current = read_int(swap_file) if os.path.exists(swap_file) else None
        growing = mem.swap == -1 or (current is not None and mem.swap > current)
    # The kernel keeps limit <= memsw at every moment: when memsw grows write it
    # first, when it shrinks write the limit first.
    for item in ([swap, limit] if growing else [limit, swap]):
        if item is not None:
            add(*item)
    add("memory", "memory.reservation", "memory.soft_limit_in_bytes", mem.reservation)
    add("memory", "memory.swappiness", "memory.swappiness", mem.swappiness)
    if mem.disable_oom_killer is not None:
        add("memory", "memory.disableOOMKiller", "memory.oom_control",
            1 if mem.disable_oom_killer else 0)


# --- freezer: freezer.state -------------------------------------------------------------

def freeze(path: str) -> None:
    """Write FROZEN and wait out FREEZING: the kernel stops the tasks one by one."""
    state = os.path.join(path, "freezer.state")
    deadline = time.monotonic() + FREEZE_TIMEOUT
    delay = 0.0002
    while True:
        write_file(state, "FROZEN")
        if read_file(state) == "FROZEN":
            return
        if time.monotonic() > deadline:
            write_file(state, "THAWED")
            raise MinirunError(f"{state} stayed FREEZING for {FREEZE_TIMEOUT:.0f} s: a task "
                               "in the cgroup cannot be frozen; thawed it again")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def thaw(path: str) -> None:
    write_file(os.path.join(path, "freezer.state"), "THAWED")


def is_frozen(path: str) -> bool:
    return read_file(os.path.join(path, "freezer.state")) == "FROZEN"


# --- what the kernel measured ----------------------------------------------------------

def oom_kill_count(path: str) -> int:
    """memory.oom_control's oom_kill line: processes the OOM killer took (Linux 4.13+)."""
    return read_keyed(os.path.join(path, "memory.oom_control")).get("oom_kill", 0)


def memory_usage(path: str) -> int:
    return int(read_file(os.path.join(path, "memory.usage_in_bytes")))


def stats(dirs: dict[str, str]) -> dict:
    """runc's ``events --stats`` shape (types/events.go), for the roles in ``dirs``."""
    out: dict = {}
    if "cpuacct" in dirs:
        path = dirs["cpuacct"]
        usage = {"total": int(read_file(os.path.join(path, "cpuacct.usage")))}
        user = read_optional(os.path.join(path, "cpuacct.usage_user"))
        if user is not None:   # nanoseconds (Linux 4.5+); cpuacct.stat counts ticks
            usage["user"] = int(user)
            usage["kernel"] = int(read_file(os.path.join(path, "cpuacct.usage_sys")))
        else:
            ticks = read_keyed(os.path.join(path, "cpuacct.stat"))
            usage["user"] = ticks.get("user", 0) * 10**9 // USER_HZ
            usage["kernel"] = ticks.get("system", 0) * 10**9 // USER_HZ
        out.setdefault("cpu", {})["usage"] = usage
    if "cpu" in dirs:
        stat = read_keyed(os.path.join(dirs["cpu"], "cpu.stat"))
        out.setdefault("cpu", {})["throttling"] = {
            "periods": stat.get("nr_periods", 0),
            "throttled_periods": stat.get("nr_throttled", 0),
            "throttled_time": stat.get("throttled_time", 0)}      # ns
    if "memory" in dirs:
        path = dirs["memory"]
        memory = {"usage": _memory_entry(path, "memory"), "oom_kill": oom_kill_count(path)}
        if os.path.exists(os.path.join(path, "memory.memsw.usage_in_bytes")):
            memory["swap"] = _memory_entry(path, "memory.memsw")
        out["memory"] = memory
    if "pids" in dirs:
        out["pids"] = {"current": int(read_file(os.path.join(dirs["pids"], "pids.current"))),
                       "limit": read_int(os.path.join(dirs["pids"], "pids.max"))}
    if "hugetlb" in dirs:
        path = dirs["hugetlb"]
        out["hugetlb"] = {}
        for size in _hugetlb_sizes(path):
            prefix = os.path.join(path, f"hugetlb.{size}.")
            out["hugetlb"][size] = {"usage": int(read_file(prefix + "usage_in_bytes")),
                                    "max": int(read_file(prefix + "max_usage_in_bytes")),
                                    "limit": read_int(prefix + "limit_in_bytes"),
                                    "failcnt": int(read_file(prefix + "failcnt"))}
    return out


def _memory_entry(path: str, prefix: str) -> dict:
    return {"usage": int(read_file(os.path.join(path, f"{prefix}.usage_in_bytes"))),
            "max": int(read_file(os.path.join(path, f"{prefix}.max_usage_in_bytes"))),
            "limit": read_int(os.path.join(path, f"{prefix}.limit_in_bytes")),
            "failcnt": int(read_file(os.path.join(path, f"{prefix}.failcnt")))}


def _hugetlb_sizes(path: str) -> list[str]:
    return sorted(name.split(".")[1] for name in os.listdir(path)
                  if name.startswith("hugetlb.") and name.endswith(".limit_in_bytes")
                  and name.count(".") == 2)
