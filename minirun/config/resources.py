"""``linux.resources``: the limits an OCI bundle asks the kernel to enforce.

This module only reads and checks the JSON (runtime-spec config-linux.md,
"Control groups"); minirun.cgroups turns the result into cgroup files. Every
value is checked here, before any cgroup is made, so a typo never leaves a
half-configured container behind. Errors name the field:
``linux.resources.cpu.quota: 500 is below 1000 us (1 ms), the smallest quota the kernel takes``.

Conventions, as in runc: -1 means "no limit" where the spec allows it, a field
that is absent (or null) is left alone, which is what makes ``update`` partial.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from minirun.config import fields as f
from minirun.errors import ConfigError

# The kernel's bounds (kernel/sched/core.c): cpu.shares is clamped to 2..262144,
# a CFS period must be 1 ms..1 s and a quota at least 1 ms.
MIN_SHARES, MAX_SHARES = 2, 262144
MIN_QUOTA_US = 1000
MIN_PERIOD_US, MAX_PERIOD_US = 1000, 1000000
# blkio.weight's range in cgroup v1 (block/blk-cgroup.h: CFQ_WEIGHT_MIN/MAX)
MIN_BLKIO_WEIGHT, MAX_BLKIO_WEIGHT = 10, 1000


@dataclass
class CpuResources:
    shares: int | None = None            # relative weight, 2..262144 (default 1024)
    quota: int | None = None             # us of CPU time per period; -1: no limit
    period: int | None = None            # us, 1000..1000000
    burst: int | None = None             # us a period may borrow from unused quota
    realtime_runtime: int | None = None  # us per realtime period (SCHED_FIFO/RR tasks)
    realtime_period: int | None = None
    cpus: str | None = None              # a cpu list: "0-1,3"
    mems: str | None = None              # NUMA nodes, same syntax
    idle: int | None = None              # 1: the whole cgroup runs as SCHED_IDLE


@dataclass
class MemoryResources:
    limit: int | None = None             # bytes; -1: no limit
    reservation: int | None = None       # soft limit (v1) / protection (v2), bytes
    swap: int | None = None              # memory + swap, bytes (the v1 meaning); -1: no limit
    swappiness: int | None = None        # 0..100
    disable_oom_killer: bool | None = None


@dataclass
class HugepageLimit:
    page_size: str                       # "2MB", "1GB": also the kernel's file name part
    limit: int                           # bytes, a multiple of the page size


@dataclass
class DeviceRule:
    """One rule of the device controller: ``c 1:3 rwm`` (major/minor None: ``*``)."""
    allow: bool
    type: str = "a"                      # a (all), c (char), b (block)
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"                  # read, write, mknod

    def __str__(self) -> str:
        return f"{self.type} {_star(self.major)}:{_star(self.minor)} {self.access}"


def _star(number: int | None) -> str:
    return "*" if number is None else str(number)


@dataclass
class Resources:
    cpu: CpuResources | None = None
    memory: MemoryResources | None = None
    pids_limit: int | None = None        # -1: no limit
    hugepage_limits: list[HugepageLimit] = field(default_factory=list)
    block_io_weight: int | None = None   # 10..1000
    devices: list[DeviceRule] = field(default_factory=list)
    unified: dict[str, str] = field(default_factory=dict)   # raw cgroup v2 files


# --- the machine, for the checks that depend on it ---------------------------------

def hugepage_sizes(sys_root: str = "/sys") -> dict[str, int]:
    """Huge page sizes the kernel has, by OCI name: {"2MB": 2097152, "1GB": ...}.

    /sys/kernel/mm/hugepages holds one ``hugepages-<N>kB`` directory per size
    (Documentation/admin-guide/mm/hugetlbpage.rst).
    """
    sizes = {}
    try:
        names = os.listdir(os.path.join(sys_root, "kernel/mm/hugepages"))
    except FileNotFoundError:
        return sizes
    for name in names:
        if name.startswith("hugepages-") and name.endswith("kB"):
            kib = int(name[len("hugepages-"):-2])
            sizes[page_size_name(kib * 1024)] = kib * 1024
    return dict(sorted(sizes.items(), key=lambda item: item[1]))


def page_size_name(size: int) -> str:
    """2097152 -> "2MB": the kernel's own spelling in ``hugetlb.2MB.max`` (mm/hugetlb_cgroup.c)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def parse_cpu_list(text: str, where: str) -> set[int]:
    """"0-2,5" -> {0, 1, 2, 5}: the list format of cpuset(7)."""
    numbers: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise ConfigError(where, f"{text!r} is not a list like 0-2,5 (see cpuset(7))") \
                from None
        if lo < 0 or hi < lo:
            raise ConfigError(where, f"{part!r} is not a valid range")
        numbers.update(range(lo, hi + 1))
    return numbers


def online(kind: str, sys_root: str = "/sys") -> set[int]:
    """The CPUs (``cpu``) or NUMA nodes (``node``) the kernel has online."""
    try:
        with open(os.path.join(sys_root, f"devices/system/{kind}/online")) as fh:
            return parse_cpu_list(fh.read(), f"/sys/devices/system/{kind}/online")
    except FileNotFoundError:   # a kernel without NUMA has one node, 0
        return set(range(os.cpu_count() or 1)) if kind == "cpu" else {0}


# --- the parser ------------------------------------------------------------------------

UNSUPPORTED = {
    "network": "net_cls/net_prio classes are not set by minirun",
    "rdma": "the rdma controller is not set by minirun",
}
CPU_FIELDS = {"shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod",
              "cpus", "mems", "idle"}
MEMORY_FIELDS = {"limit", "reservation", "swap", "swappiness", "disableOOMKiller",
                 "useHierarchy", "checkBeforeUpdate", "kernel", "kernelTCP"}


def parse_resources(obj: dict | None, where: str = "linux.resources") -> Resources:
    """Check ``linux.resources`` (or an ``update --resources`` file) and return it typed."""
    res = Resources()
    if obj is None:
        return res
    f.check_type(obj, dict, where)
    f.refuse_unsupported(obj, UNSUPPORTED, where)
    _refuse_unknown(obj, {"cpu", "memory", "pids", "hugepageLimits", "blockIO", "devices",
                          "unified", *UNSUPPORTED}, where)
    if obj.get("cpu") is not None:
        res.cpu = _parse_cpu(f.field(obj, "cpu", dict, where), f"{where}.cpu")
    if obj.get("memory") is not None:
        res.memory = _parse_memory(f.field(obj, "memory", dict, where), f"{where}.memory")
    pids = f.field(obj, "pids", dict, where)
    if pids is not None:
        _refuse_unknown(pids, {"limit"}, f"{where}.pids")
        res.pids_limit = _limit(pids, "limit", f"{where}.pids",
                                zero="would forbid every fork")
    res.hugepage_limits = _parse_hugepages(obj, where)
    block_io = f.field(obj, "blockIO", dict, where)
    if block_io is not None:
        res.block_io_weight = _parse_block_io(block_io, f"{where}.blockIO")
    res.devices = [_parse_device_rule(d, w) for w, d in f.objects(obj, "devices", where)]
    unified = f.field(obj, "unified", dict, where, default={})
    for key, value in unified.items():
        f.check_type(value, str, f"{where}.unified.{key}")
        if "/" in key or key.startswith(".") or "." not in key:
            raise ConfigError(f"{where}.unified.{key}",
                              "expected a cgroup v2 file name like memory.high")
    res.unified = dict(unified)
    return res


def _refuse_unknown(obj: dict, known: set[str], where: str) -> None:
    for key in obj:
        if key not in known:
            raise ConfigError(f"{where}.{key}",
                              f"unknown field (known: {', '.join(sorted(known))})")


def _int(obj: dict, key: str, where: str) -> int | None:
    return f.field(obj, key, int, where)


def _limit(obj: dict, key: str, where: str, zero: str) -> int | None:
    """A limit where -1 means "none"; other negatives and 0 are refused with a reason."""
    value = _int(obj, key, where)
    if value is None or value == -1 or value > 0:
        return value
    if value == 0:
        raise ConfigError(f"{where}.{key}", f"0 {zero}; use -1 for no limit")
    raise ConfigError(f"{where}.{key}", f"{value} is negative; use -1 for no limit")


def _parse_cpu(obj: dict, where: str) -> CpuResources:
    _refuse_unknown(obj, CPU_FIELDS, where)
    cpu = CpuResources(shares=_int(obj, "shares", where), quota=_int(obj, "quota", where),
                       period=_int(obj, "period", where), burst=_int(obj, "burst", where),
                       realtime_runtime=_int(obj, "realtimeRuntime", where),
                       realtime_period=_int(obj, "realtimePeriod", where),
                       cpus=f.field(obj, "cpus", str, where) or None,
                       mems=f.field(obj, "mems", str, where) or None,
                       idle=_int(obj, "idle", where))
    if cpu.shares is not None and not MIN_SHARES <= cpu.shares <= MAX_SHARES:
        raise ConfigError(f"{where}.shares",
                          f"{cpu.shares} is outside {MIN_SHARES}..{MAX_SHARES} (default 1024)")
    if cpu.quota is not None and cpu.quota != -1 and cpu.quota < MIN_QUOTA_US:
        raise ConfigError(f"{where}.quota", f"{cpu.quota} is below {MIN_QUOTA_US} us (1 ms), the "
                          "smallest quota the kernel takes; use -1 for no limit")
    if cpu.period is not None and not MIN_PERIOD_US <= cpu.period <= MAX_PERIOD_US:
        raise ConfigError(f"{where}.period", f"{cpu.period} is outside {MIN_PERIOD_US}.."
                          f"{MAX_PERIOD_US} us (1 ms to 1 s)")
    if cpu.burst is not None:
        if cpu.burst < 0:
            raise ConfigError(f"{where}.burst", f"{cpu.burst} is negative")
        if cpu.quota is not None and cpu.quota != -1 and cpu.burst > cpu.quota:
            raise ConfigError(f"{where}.burst", f"{cpu.burst} is above the quota ({cpu.quota}); "
                              "the kernel allows at most one quota of burst")
    if cpu.realtime_runtime is not None and cpu.realtime_runtime < -1:
        raise ConfigError(f"{where}.realtimeRuntime", f"{cpu.realtime_runtime} is negative")
    if cpu.realtime_period is not None and cpu.realtime_period <= 0:
        raise ConfigError(f"{where}.realtimePeriod", "must be greater than zero")
    if cpu.idle not in (None, 0, 1):
        raise ConfigError(f"{where}.idle", f"expected 0 or 1, got {cpu.idle}")
    for key, kind, label in (("cpus", "cpu", "CPUs"), ("mems", "node", "memory nodes")):
        text = getattr(cpu, key)
        if text is None:
            continue
        wanted, have = parse_cpu_list(text, f"{where}.{key}"), online(kind)
        if not wanted:
            raise ConfigError(f"{where}.{key}", "is an empty list")
        missing = sorted(wanted - have)
        if missing:
            raise ConfigError(f"{where}.{key}", f"{label} {_ranges(missing)} do not exist "
                              f"(this machine has {_ranges(sorted(have))})")
    return cpu


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)


def _parse_memory(obj: dict, where: str) -> MemoryResources:
    _refuse_unknown(obj, MEMORY_FIELDS, where)
    f.refuse_unsupported(obj, {
        "kernel": "kernel memory limits are deprecated and gone from recent kernels",
        "kernelTCP": "kernel memory limits are deprecated and gone from recent kernels",
    }, where)
    if obj.get("useHierarchy") is False:
        raise ConfigError(f"{where}.useHierarchy", "false is not supported: the kernel always "
                          "accounts memory hierarchically")
    f.field(obj, "checkBeforeUpdate", bool, where)   # accepted: update always checks
    mem = MemoryResources(limit=_limit(obj, "limit", where, zero="bytes would allow nothing"),
                          reservation=_int(obj, "reservation", where),
                          swap=_int(obj, "swap", where),
                          swappiness=_int(obj, "swappiness", where),
                          disable_oom_killer=f.field(obj, "disableOOMKiller", bool, where))
    if mem.reservation is not None and mem.reservation < -1:
        raise ConfigError(f"{where}.reservation", f"{mem.reservation} is negative; use -1 for "
                          "no soft limit")
    if mem.swap is not None:
        if mem.swap < -1:
            raise ConfigError(f"{where}.swap", f"{mem.swap} is negative; use -1 for no limit")
        if mem.swap not in (-1, 0) and mem.limit not in (None, -1) and mem.swap < mem.limit:
            raise ConfigError(f"{where}.swap", f"{mem.swap} is below limit ({mem.limit}): swap "
                              "is memory plus swap, so it must be at least the memory limit")
        if mem.swap == 0:
            mem.swap = None   # runc's convention: 0 means "not set"
    if mem.swappiness is not None and not 0 <= mem.swappiness <= 100:
        raise ConfigError(f"{where}.swappiness", f"{mem.swappiness} is outside 0..100")
    return mem


def _parse_hugepages(obj: dict, where: str) -> list[HugepageLimit]:
    limits: list[HugepageLimit] = []
    entries = f.objects(obj, "hugepageLimits", where)
    if not entries:
        return limits
    sizes = hugepage_sizes()
    for w, entry in entries:
        _refuse_unknown(entry, {"pageSize", "limit"}, w)
        name = f.field(entry, "pageSize", str, w, required=True)
        if name not in sizes:
            have = ", ".join(sizes) or "none"
            raise ConfigError(f"{w}.pageSize", f"unknown huge page size {name!r} (this machine "
                              f"has: {have}; see /sys/kernel/mm/hugepages)")
        if any(limit.page_size == name for limit in limits):
            raise ConfigError(f"{w}.pageSize", f"{name} is listed twice")
        limit = f.field(entry, "limit", int, w, required=True)
        if limit < 0:
            raise ConfigError(f"{w}.limit", f"{limit} is negative")
        if limit % sizes[name]:
            raise ConfigError(f"{w}.limit", f"{limit} is not a multiple of the page size "
                              f"({sizes[name]}); the kernel would round it down")
        limits.append(HugepageLimit(name, limit))
    return limits


def _parse_block_io(obj: dict, where: str) -> int | None:
    f.refuse_unsupported(obj, {
        key: "only blockIO.weight is set by minirun"
        for key in ("leafWeight", "weightDevice", "throttleReadBpsDevice",
                    "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice")
    }, where)
    _refuse_unknown(obj, {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                          "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                          "throttleWriteIOPSDevice"}, where)
    weight = _int(obj, "weight", where)
    if weight is not None and not MIN_BLKIO_WEIGHT <= weight <= MAX_BLKIO_WEIGHT:
        raise ConfigError(f"{where}.weight",
                          f"{weight} is outside {MIN_BLKIO_WEIGHT}..{MAX_BLKIO_WEIGHT}")
    return weight


def _parse_device_rule(obj: dict, where: str) -> DeviceRule:
    _refuse_unknown(obj, {"allow", "type", "major", "minor", "access"}, where)
    rule = DeviceRule(allow=f.field(obj, "allow", bool, where, required=True),
                      type=f.field(obj, "type", str, where) or "a",
                      major=_int(obj, "major", where), minor=_int(obj, "minor", where),
                      access=f.field(obj, "access", str, where) or "rwm")
    if rule.type not in ("a", "c", "b"):
        raise ConfigError(f"{where}.type", f"expected a, c or b, got {f.describe(rule.type)}")
    for key in ("major", "minor"):
        number = getattr(rule, key)
        if number == -1:
            setattr(rule, key, None)   # -1 is the spec's wildcard, the kernel's "*"
        elif number is not None and number < 0:
            raise ConfigError(f"{where}.{key}", f"{number} is negative; use -1 for any")
    if not rule.access or set(rule.access) - set("rwm") or len(set(rule.access)) != len(
            rule.access):
        raise ConfigError(f"{where}.access", f"expected letters of rwm, got "
                          f"{f.describe(rule.access)}")
    return rule
