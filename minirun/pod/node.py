"""The node: what this machine offers pods, and whether one more pod fits.

- capacity: what the machine has (cadvisor's MachineInfo): CPUs, MemTotal,
  the huge pages reserved in /sys/kernel/mm/hugepages, and 110 pods;
- allocatable: capacity minus --kube-reserved, --system-reserved and the
  memory.available hard-eviction threshold, and minus the huge pages from memory
  (pkg/kubelet/cm/node_container_manager_linux.go, nodestatus.MachineInfo);
- admit: the kubelet's admission check (lifecycle/predicate.go calling the
  scheduler's NodeResourcesFit), with its reasons: OutOfcpu, OutOfmemory,
  OutOfhugepages-2Mi, OutOfpods;
- swap: the kubelet refuses to start on a machine with swap unless
  --fail-swap-on=false.

Resources are plain dicts: "cpu" in millicores, "memory" and "hugepages-*" in
bytes, "pods" a count. quantity.format_quantity prints them as kubectl does.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field

from minirun.config.pod import CPU, HUGEPAGE_SIZES, MEMORY, Pod
from minirun.config.quantity import format_quantity, parse_amount, to_bytes, to_millicores
from minirun.errors import ConfigError, MinirunError

PODS = "pods"
MAX_PODS = 110                                  # the kubelet's default --max-pods
DEFAULT_EVICTION_HARD = "memory.available<100Mi"  # its memory part of the Linux default
EVICTION_SIGNALS = ("memory.available", "nodefs.available", "nodefs.inodesFree",
                    "imagefs.available", "imagefs.inodesFree", "pid.available")
RESERVABLE = (CPU, MEMORY)


# --- capacity ------------------------------------------------------------------------

def memory_capacity(proc_root: str = "/proc") -> int:
    """MemTotal from /proc/meminfo (proc(5)), in bytes: what cadvisor reports."""
    with open(os.path.join(proc_root, "meminfo")) as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise MinirunError(f"{proc_root}/meminfo has no MemTotal line")


def hugepages_capacity(sys_root: str = "/sys") -> dict[str, int]:
    """Reserved huge pages per size: nr_hugepages times the page size, as
    hugepages-2Mi / hugepages-1Gi (sizes the kubelet has no name for are left out)."""
    found = {}
    base = os.path.join(sys_root, "kernel/mm/hugepages")
    names = {size: name for name, size in HUGEPAGE_SIZES.items()}
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if not (entry.startswith("hugepages-") and entry.endswith("kB")):
            continue
        size = int(entry[len("hugepages-"):-2]) * 1024
        if size not in names:
            continue
        with open(os.path.join(base, entry, "nr_hugepages")) as fh:
            found[names[size]] = int(fh.read()) * size
    return found


def capacity(proc_root: str = "/proc", sys_root: str = "/sys",
             cpus: int | None = None, max_pods: int = MAX_PODS) -> dict[str, int]:
    """The node's capacity, as ``kubectl describe node`` lists it under Capacity."""
    return {CPU: (cpus or os.cpu_count() or 1) * 1000,
            MEMORY: memory_capacity(proc_root),
            **hugepages_capacity(sys_root),
            PODS: max_pods}


# --- reservations and eviction -------------------------------------------------------

def parse_reserved(text: str, flag: str = "--kube-reserved") -> dict[str, int]:
    """``cpu=100m,memory=256Mi`` -> {"cpu": 100, "memory": 268435456}."""
    reserved: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        where = f"{flag} {name}"
        if not sep:
            raise ConfigError(flag, f"{item!r}: expected NAME=QUANTITY, e.g. cpu=100m,memory=1Gi")
        if name not in RESERVABLE:
            raise ConfigError(where, f"cannot be reserved by minirun (known: "
                              f"{', '.join(RESERVABLE)})")
        q = parse_amount(value, where)
        reserved[name] = to_millicores(q) if name == CPU else to_bytes(q)
    return reserved


@dataclass
class Threshold:
    """One hard-eviction threshold: ``memory.available<100Mi`` or ``<10%``."""
    signal: str
    quantity: int | None = None          # bytes (or a count)
    percentage: float | None = None      # a fraction of the capacity, as a float32

    def amount(self, total: int) -> int:
        """GetThresholdQuantity: ``int64(float64(capacity) * float64(percentage))``."""
        if self.quantity is not None:
            return self.quantity
        return int(float(total) * self.percentage)


def _float32(value: float) -> float:
    """Round to the nearest float32, as Go's float32() does."""
    return struct.unpack("f", struct.pack("f", value))[0]


def parse_eviction_hard(text: str = DEFAULT_EVICTION_HARD) -> list[Threshold]:
    """``memory.available<100Mi,nodefs.available<10%`` (only ``<`` is valid for hard)."""
    thresholds = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        signal, sep, value = item.partition("<")
        where = f"--eviction-hard {signal}"
        if not sep:
            raise ConfigError("--eviction-hard", f"{item!r}: expected SIGNAL<QUANTITY or "
                              "SIGNAL<PERCENT%, e.g. memory.available<100Mi")
        if signal not in EVICTION_SIGNALS:
            raise ConfigError(where, f"unknown eviction signal (known: "
                              f"{', '.join(EVICTION_SIGNALS)})")
        if value.endswith("%"):
            # parsePercentage: ParseFloat(s, 32), then float32(value) / 100
            try:
                percent = _float32(float(value[:-1]))
            except (ValueError, OverflowError):
                raise ConfigError(where, f"{value!r} is not a percentage") from None
            if not 0 <= percent <= 100:
                raise ConfigError(where, f"{value} is outside 0%..100%")
            thresholds.append(Threshold(signal, percentage=_float32(percent / 100)))
        else:
            q = parse_amount(value, where)
            thresholds.append(Threshold(signal, quantity=to_bytes(q)))
    return thresholds


@dataclass
class NodeConfig:
    """The kubelet flags that shape allocatable."""
    kube_reserved: dict[str, int] = field(default_factory=dict)
    system_reserved: dict[str, int] = field(default_factory=dict)
    eviction_hard: list[Threshold] = field(
        default_factory=lambda: parse_eviction_hard(DEFAULT_EVICTION_HARD))
    fail_swap_on: bool = True


def allocatable(cap: dict[str, int], config: NodeConfig | None = None) -> dict[str, int]:
    """Capacity minus what is reserved (GetNodeAllocatableReservation + MachineInfo).

    Per resource: capacity - kube-reserved - system-reserved - the hard-eviction
    threshold (memory only: memory.available), never below 0. Then every huge
    page reserved is memory nobody else can have, so it leaves memory too.
    """
    config = config or NodeConfig()
    out = {}
    for name, total in cap.items():
        reserved = config.kube_reserved.get(name, 0) + config.system_reserved.get(name, 0)
        if name == MEMORY:
            reserved += sum(t.amount(total) for t in config.eviction_hard
                            if t.signal == "memory.available")
        out[name] = max(total - reserved, 0)
    for name in HUGEPAGE_SIZES:
        if name in cap:
            out[MEMORY] = max(out[MEMORY] - cap[name], 0)
    return out


def kubepods_resources(cap: dict[str, int], config: NodeConfig | None = None) -> dict:
    """The kubepods cgroup (enforceNodeAllocatableCgroups): capacity minus kube- and
    system-reserved, but not the eviction threshold (eviction must get to act before
    the kernel's OOM killer): cpu.shares of that cpu, that memory, the huge pages."""
    from minirun.config.resources import page_size_name
    from minirun.pod.qos import milli_cpu_to_shares

    config = config or NodeConfig()

    def left(name: str) -> int:
        return max(cap[name] - config.kube_reserved.get(name, 0)
                   - config.system_reserved.get(name, 0), 0)

    out: dict = {"cpu": {"shares": milli_cpu_to_shares(left(CPU))},
                 "memory": {"limit": left(MEMORY)}}
    pages = [{"pageSize": page_size_name(size), "limit": cap[name]}
             for name, size in HUGEPAGE_SIZES.items() if name in cap]
    if pages:
        out["hugepageLimits"] = pages
    return out


# --- admission ---------------------------------------------------------------------------

def pod_request_totals(pod: Pod) -> dict[str, int]:
    """What the pod takes from allocatable: its effective requests (qos.pod_requests),
    cpu in millicores, the rest in bytes, plus one pod."""
    from minirun.pod.qos import pod_requests

    out = {PODS: 1}
    for name, value in pod_requests(pod).items():
        out[name] = math.ceil(value * 1000) if name == CPU else math.ceil(value)
    return out


def admit(pod: Pod, node_allocatable: dict[str, int],
          already_requested: dict[str, int]) -> list[str]:
    """The kubelet's admission (fitsRequest): an empty list admits the pod.

    ``already_requested`` sums pod_request_totals() of the pods running (its
    "pods" is their number). Each refusal reads like the kubelet's event,
    ``OutOfcpu: Node didn't have enough resource: cpu, requested: 2000, used:
    500, capacity: 1900``: the part before the colon is the reason.
    """
    wanted = pod_request_totals(pod)
    reasons = []
    used_pods = already_requested.get(PODS, 0)
    if used_pods + 1 > node_allocatable.get(PODS, 0):
        reasons.append(_out_of(PODS, 1, used_pods, node_allocatable.get(PODS, 0)))
    for name, amount in wanted.items():
        if name == PODS or amount <= 0:
            continue
        have = node_allocatable.get(name, 0)
        used = already_requested.get(name, 0)
        if amount > have - used:
            reasons.append(_out_of(name, amount, used, have))
    return reasons


def _out_of(name: str, requested: int, used: int, have: int) -> str:
    return (f"OutOf{name}: Node didn't have enough resource: {name}, requested: {requested}, "
            f"used: {used}, capacity: {have}")


# --- swap ----------------------------------------------------------------------------------

def swap_enabled(proc_root: str = "/proc") -> bool:
    """/proc/swaps lists one line per active swap area after its header (proc(5))."""
    try:
        with open(os.path.join(proc_root, "swaps")) as fh:
            return len([line for line in fh.read().splitlines()[1:] if line.strip()]) > 0
    except FileNotFoundError:
        return False


def check_swap(fail_swap_on: bool = True, proc_root: str = "/proc") -> None:
    """The kubelet's start-up check (container_manager_linux.go NewContainerManager)."""
    if fail_swap_on and swap_enabled(proc_root):
        raise MinirunError("running with swap on is not supported, please disable swap or set "
                           "--fail-swap-on flag to false (/proc/swaps lists active swap areas)")


def describe(cap: dict[str, int], alloc: dict[str, int]) -> list[tuple[str, str, str]]:
    """(resource, capacity, allocatable) rows, the quantities written as kubectl does."""
    rows = []
    for name in (CPU, MEMORY, *HUGEPAGE_SIZES, PODS):
        if name in cap or name in HUGEPAGE_SIZES:
            c, a = cap.get(name, 0), alloc.get(name, 0)
            if name == PODS:
                rows.append((name, str(c), str(a)))
            else:
                rows.append((name, format_quantity(c, milli=name == CPU),
                             format_quantity(a, milli=name == CPU)))
    return rows
