"""cgroup v2: one tree for every controller (Documentation/admin-guide/cgroup-v2.rst).

Two rules shape what minirun does here:

- A controller reaches a cgroup only if every ancestor lists it in
  ``cgroup.subtree_control``; minirun enables what it needs along the path.
- No internal processes: a cgroup (other than the root) that hands controllers
  to its children may hold no processes itself. Processes go in leaves only.

Functions here take ``dirs``: role -> the container's v2 directory (and
"unified" -> that same directory, whatever its roles).
"""

from __future__ import annotations

import errno
import math
import os
import time

from minirun.cgroups import devices
from minirun.cgroups.files import Write, read_file, read_int, read_keyed, write_file
from minirun.cgroups.layout import V2_ROLES
from minirun.config.resources import Resources
from minirun.errors import ConfigError, MinirunError

FREEZE_TIMEOUT = 5.0
ROLE_CONTROLLER = {role: controller for controller, role in V2_ROLES.items()}


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144, default 1024) -> cpu.weight (1..10000, default 100).

    The curve runc 1.3.2+ and crun 1.23+ use: a quadratic in log2(shares) that
    maps 2 -> 1, 1024 -> 100 and 262144 -> 10000, so a container with the
    default shares competes on equal terms with every other cgroup at the
    default weight. The kubelet's older linear ``1 + (shares-2)*9999/262142``
    maps 1024 to 39. See docs/cgroups.md.
    """
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    log = math.log2(shares)
    return math.ceil(10 ** ((log * log + 125 * log) / 612 - 7 / 34))


def blkio_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) -> io.weight (1..10000), linearly as runc does."""
    return 1 + (weight - 10) * 9999 // 990


def enable_controllers(start: str, leaf: str, roles: tuple[str, ...]) -> set[str]:
    """Write ``+controller`` into cgroup.subtree_control of ``start`` and every directory
    below it down to ``leaf``'s parent, where missing. Returns what reaches ``leaf``."""
    wanted = {ROLE_CONTROLLER[r] for r in roles if r in ROLE_CONTROLLER}
    path = start
    chain = [start]
    for part in os.path.relpath(os.path.dirname(leaf), start).split(os.sep):
        if part != ".":
            path = os.path.join(path, part)
            chain.append(path)
    for path in chain:
        control = os.path.join(path, "cgroup.subtree_control")
        enabled = set(read_file(control).split())
        if wanted <= enabled:
            continue
        available = set(read_file(os.path.join(path, "cgroup.controllers")).split())
        wanted &= available          # a controller the parent withholds cannot go further
        missing = sorted(wanted - enabled)
        if not missing:
            continue
        try:
            write_file(control, " ".join(f"+{c}" for c in missing))
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            raise MinirunError(
                f"cannot enable {' '.join(missing)} in {control}: {path} has processes of its "
                "own, and cgroup v2 lets controllers reach only children of cgroups without "
                "processes (the no-internal-processes rule, cgroups(7)); choose a cgroup root "
                "elsewhere with --cgroup-root or MINIRUN_CGROUP_ROOT") from None
    return wanted


def refuse_unsupported(res: Resources, roles: set[str], where: str) -> None:
    """What cgroup v2 cannot express is refused by field name, never silently dropped."""
    if res.cpu is not None and "cpu" in roles:
        for key in ("realtime_runtime", "realtime_period"):
            if getattr(res.cpu, key) is not None:
                name = "realtimeRuntime" if key == "realtime_runtime" else "realtimePeriod"
                raise ConfigError(f"{where}.cpu.{name}", "cgroup v2 has no realtime CPU "
                                  "bandwidth files (cpu.rt_*); not supported on v2")
    if res.memory is not None and "memory" in roles:
        if res.memory.swappiness is not None:
            raise ConfigError(f"{where}.memory.swappiness", "cgroup v2 has no per-cgroup "
                              "swappiness; not supported on v2")
        if res.memory.disable_oom_killer:
            raise ConfigError(f"{where}.memory.disableOOMKiller", "cgroup v2 cannot turn the "
                              "OOM killer off (memory.oom_control is v1 only)")
    if res.devices and "devices" in roles:
        i = devices.first_non_default(res.devices)
        if i is not None:
            raise ConfigError(f"{where}.devices[{i}]", "device rules on cgroup v2 need an eBPF "
                              "program (BPF_PROG_TYPE_CGROUP_DEVICE), which minirun does not "
                              "load; only the default deny-all rule is accepted")


def writes(res: Resources, dirs: dict[str, str], where: str) -> list[Write]:
    """The writes that apply ``res`` to the container's v2 cgroup, in order."""
    out: list[Write] = []

    def add(role: str, key: str, name: str, value: object, missing: str | None = None,
            refused: str | None = None) -> None:
        if value is not None and role in dirs:
            out.append(Write(f"{where}.{key}", os.path.join(dirs[role], name), str(value),
                             missing, refused))

    cpu = res.cpu
    if cpu is not None:
        if cpu.shares is not None:
            add("cpu", "cpu.shares", "cpu.weight", shares_to_weight(cpu.shares))
        if cpu.quota is not None or cpu.period is not None:
            key = "cpu.quota" if cpu.quota is not None else "cpu.period"
            add("cpu", key, "cpu.max", _cpu_max(cpu.quota, cpu.period, dirs.get("cpu")))
        add("cpu", "cpu.burst", "cpu.max.burst", cpu.burst,
            "this kernel has no cpu.max.burst (CFS burst came in Linux 5.14)")
        add("cpu", "cpu.idle", "cpu.idle", cpu.idle, "this kernel has no cpu.idle (Linux 5.15+)")
        within = "a cpuset must stay within its parent's cpuset.cpus.effective"
        add("cpuset", "cpu.cpus", "cpuset.cpus", cpu.cpus, None, within)
        add("cpuset", "cpu.mems", "cpuset.mems", cpu.mems, None, within)
    mem = res.memory
    if mem is not None:
        add("memory", "memory.limit", "memory.max", _max(mem.limit))
        if mem.swap is not None and "memory" in dirs:
            add("memory", "memory.swap", "memory.swap.max",
                _swap_max(mem.swap, mem.limit, dirs["memory"], f"{where}.memory.swap"),
                "memory.swap.max does not exist: the kernel does not account swap")
        add("memory", "memory.reservation", "memory.low", _max(mem.reservation))
    add("pids", "pids.limit", "pids.max", _max(res.pids_limit))
    for i, h in enumerate(res.hugepage_limits):
        add("hugetlb", f"hugepageLimits[{i}].limit", f"hugetlb.{h.page_size}.max", h.limit,
            f"the hugetlb controller has no {h.page_size} pages here")
    if res.block_io_weight is not None and "blkio" in dirs:
        # like runc: io.bfq.weight takes blkio's 1..1000 scale as is; io.weight is 1..10000
        if os.path.exists(os.path.join(dirs["blkio"], "io.bfq.weight")):
            add("blkio", "blockIO.weight", "io.bfq.weight", res.block_io_weight)
        else:
            add("blkio", "blockIO.weight", "io.weight",
                f"default {blkio_to_io_weight(res.block_io_weight)}",
                "neither io.bfq.weight nor io.weight exists: no disk uses BFQ or io.cost")
    for key, value in res.unified.items():
        add("unified", f"unified.{key}", key, value)   # the Cgroup checked the controller
    return out


def _max(value: int | None) -> str | None:
    return None if value is None else "max" if value == -1 else str(value)


def _cpu_max(quota: int | None, period: int | None, path: str | None) -> str:
    """cpu.max is "QUOTA PERIOD" or "max PERIOD"; a lone period keeps the current quota."""
    if quota is None:
        quota_text = read_file(os.path.join(path, "cpu.max")).split()[0] if path else "max"
    else:
        quota_text = "max" if quota == -1 else str(quota)
    return quota_text if period is None else f"{quota_text} {period}"


def _swap_max(swap: int, limit: int | None, path: str, where: str) -> str:
    """OCI swap is memory+swap (the v1 meaning); memory.swap.max is swap alone."""
    if swap == -1:
        return "max"
    if limit is None:
        limit = read_int(os.path.join(path, "memory.max"))
    if limit is None or limit == -1:
        raise ConfigError(where, "cgroup v2 limits swap apart from memory (memory.swap.max = "
                          "swap - limit), so a swap limit needs a memory limit")
    return str(swap - limit)


# --- freezer: cgroup.freeze and cgroup.events (Linux 5.2+) -----------------------------

def freeze(path: str) -> None:
    _set_frozen(path, True)


def thaw(path: str) -> None:
    _set_frozen(path, False)


def is_frozen(path: str) -> bool:
    return read_keyed(os.path.join(path, "cgroup.events")).get("frozen") == 1


def _set_frozen(path: str, frozen: bool) -> None:
    """Write cgroup.freeze, then wait until cgroup.events says ``frozen 1`` (or 0)."""
    write_file(os.path.join(path, "cgroup.freeze"), "1" if frozen else "0")
    deadline = time.monotonic() + FREEZE_TIMEOUT
    delay = 0.0002
    while is_frozen(path) != frozen:
        if time.monotonic() > deadline:
            raise MinirunError(f"{path}/cgroup.events did not report frozen "
                               f"{int(frozen)} within {FREEZE_TIMEOUT:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def kill(path: str) -> bool:
    """cgroup.kill (Linux 5.14+): SIGKILL every process below ``path`` in one write."""
    try:
        write_file(os.path.join(path, "cgroup.kill"), "1")
        return True
    except FileNotFoundError:
        return False


# --- what the kernel measured ----------------------------------------------------------

def oom_kill_count(path: str) -> int:
    """memory.events' oom_kill: counted for this cgroup and every cgroup below it."""
    return read_keyed(os.path.join(path, "memory.events")).get("oom_kill", 0)


def memory_usage(path: str) -> int:
    return int(read_file(os.path.join(path, "memory.current")))


def stats(dirs: dict[str, str]) -> dict:
    """runc's ``events --stats`` shape (types/events.go), for the roles in ``dirs``."""
    out: dict = {}
    if "cpuacct" in dirs or "cpu" in dirs:
        stat = read_keyed(os.path.join(dirs.get("cpuacct") or dirs["cpu"], "cpu.stat"))
        cpu = out.setdefault("cpu", {})
        if "cpuacct" in dirs:
            cpu["usage"] = {"total": stat.get("usage_usec", 0) * 1000,
                            "user": stat.get("user_usec", 0) * 1000,
                            "kernel": stat.get("system_usec", 0) * 1000}
        if "cpu" in dirs:
            cpu["throttling"] = {"periods": stat.get("nr_periods", 0),
                                 "throttled_periods": stat.get("nr_throttled", 0),
                                 "throttled_time": stat.get("throttled_usec", 0) * 1000}
    if "memory" in dirs:
        path = dirs["memory"]
        events = read_keyed(os.path.join(path, "memory.events"))
        usage = {"usage": memory_usage(path), "limit": read_int(os.path.join(path, "memory.max")),
                 "failcnt": events.get("max", 0)}
        if os.path.exists(os.path.join(path, "memory.peak")):   # Linux 5.19+
            usage["max"] = int(read_file(os.path.join(path, "memory.peak")))
        out["memory"] = {"usage": usage, "oom_kill": events.get("oom_kill", 0)}
        if os.path.exists(os.path.join(path, "memory.swap.current")):
            out["memory"]["swap"] = {
                "usage": int(read_file(os.path.join(path, "memory.swap.current"))),
                "limit": read_int(os.path.join(path, "memory.swap.max"))}
    if "pids" in dirs:
        out["pids"] = {"current": int(read_file(os.path.join(dirs["pids"], "pids.current"))),
                       "limit": read_int(os.path.join(dirs["pids"], "pids.max"))}
    if "hugetlb" in dirs:
        path = dirs["hugetlb"]
        out["hugetlb"] = {}
        for size in _hugetlb_sizes(path):
            prefix = os.path.join(path, f"hugetlb.{size}.")
            out["hugetlb"][size] = {"usage": int(read_file(prefix + "current")),
                                    "limit": read_int(prefix + "max"),
                                    "failcnt": read_keyed(prefix + "events").get("max", 0)}
    return out


def _hugetlb_sizes(path: str) -> list[str]:
    return sorted(name.split(".")[1] for name in os.listdir(path)
                  if name.startswith("hugetlb.") and name.endswith(".max")
                  and name.count(".") == 2)
