"""What the kubelet computes from a pod's requests and limits, function by function.

Each function names the kubelet (or containerd) function it mirrors; the
formulas are written out again in docs/pods.md. Sources, Kubernetes 1.33:

- pkg/apis/core/v1/helper/qos/qos.go: the QoS class;
- k8s.io/component-helpers/resource/helpers.go: a pod's effective requests and
  limits (app containers summed, then the max with each init container);
- pkg/kubelet/cm/helpers_linux.go: cpu shares and quota, the pod cgroup's values;
- pkg/kubelet/kuberuntime/kuberuntime_container_linux.go: a container's values;
- pkg/kubelet/qos/policy.go: oom_score_adj;
- pkg/kubelet/cm/cgroup_manager_linux.go, qos_container_manager_linux.go: the
  cgroup names kubepods, kubepods/burstable, kubepods/besteffort, pod<UID>.

The output is an OCI ``linux.resources`` dict (minirun.config.resources parses
it). CPU weight is given as cgroup v1 ``cpu.shares``, as the kubelet gives it
to containerd; on cgroup v2 minirun.cgroups turns shares into ``cpu.weight``
with runc's curve (see docs/cgroups.md), as runc does for the kubelet.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

from minirun.config.pod import CPU, HUGEPAGE_SIZES, MEMORY, Container, Pod
from minirun.config.resources import page_size_name
from minirun.errors import MinirunError

GUARANTEED, BURSTABLE, BEST_EFFORT = "Guaranteed", "Burstable", "BestEffort"

# pkg/kubelet/cm/helpers_linux.go (the kernel's own bounds for cpu.shares)
MIN_SHARES, MAX_SHARES = 2, 262144
SHARES_PER_CPU = 1024
MILLI_CPU_TO_CPU = 1000
QUOTA_PERIOD = 100000        # us: the CFS period the kubelet always uses (100 ms)
MIN_QUOTA_PERIOD = 1000      # us: the smallest quota the kernel accepts (1 ms)

# pkg/kubelet/qos/policy.go
GUARANTEED_OOM_SCORE_ADJ = -997
BEST_EFFORT_OOM_SCORE_ADJ = 1000
# containerd pkg/cri: defaultSandboxOOMAdj and defaultSandboxCPUshares for the pause
SANDBOX_OOM_SCORE_ADJ = -998
SANDBOX_CPU_SHARES = 2
NODE_CRITICAL = "system-node-critical"
CAP_SYS_RESOURCE = 24        # <linux/capability.h>: needed to lower oom_score_adj

# pkg/kubelet/cm: defaultNodeAllocatableCgroupName, the QoS cgroups, podCgroupNamePrefix
KUBEPODS = "kubepods"
QOS_CGROUPS = {GUARANTEED: KUBEPODS, BURSTABLE: f"{KUBEPODS}/burstable",
               BEST_EFFORT: f"{KUBEPODS}/besteffort"}
POD_CGROUP_PREFIX = "pod"
# The pause container's cgroup below the pod's; "_" cannot start a container name
# (an RFC 1123 label), so no app container can take it.
SANDBOX_CGROUP = "_pause"


# --- QoS class -------------------------------------------------------------------------

def qos_class(pod: Pod) -> str:
    """ComputePodQOS (pkg/apis/core/v1/helper/qos): only cpu and memory count.

    Each container (init containers too) is BestEffort if it names no request
    or limit at all, Guaranteed if cpu and memory each have request == limit
    and are set, Burstable otherwise; a pod of mixed containers is Burstable.
    Requests were already defaulted to limits when the manifest was parsed.
    """
    found = {_container_qos(c) for c in pod.all_containers()}
    if BURSTABLE in found or len(found) > 1:
        return BURSTABLE
    return found.pop() if found else BEST_EFFORT


def _container_qos(c: Container) -> str:
    """resourceQOS: one container's requests and limits on their own."""
    req, lim = c.resources.requests, c.resources.limits
    if not req and not lim:
        return BEST_EFFORT
    kinds = set()
    for name in (CPU, MEMORY):
        r = req[name].value if name in req else 0
        limit = lim[name].value if name in lim else 0
        if r != limit:
            return BURSTABLE
        kinds.add(BEST_EFFORT if r == 0 else GUARANTEED)
    return kinds.pop() if len(kinds) == 1 else BURSTABLE


# --- cpu conversions ------------------------------------------------------------------

def milli_cpu_to_shares(milli_cpu: int) -> int:
    """MilliCPUToShares: 1 CPU is 1024 shares; 0 (no request) is the minimum, 2."""
    if milli_cpu == 0:
        return MIN_SHARES
    return min(max(milli_cpu * SHARES_PER_CPU // MILLI_CPU_TO_CPU, MIN_SHARES), MAX_SHARES)


def milli_cpu_to_quota(milli_cpu: int, period: int = QUOTA_PERIOD) -> int:
    """MilliCPUToQuota: the share of each period the limit allows, at least 1 ms.
    0 (no limit) stays 0, which means "do not set a quota"."""
    if milli_cpu == 0:
        return 0
    return max(milli_cpu * period // MILLI_CPU_TO_CPU, MIN_QUOTA_PERIOD)


def _milli(value: Fraction) -> int:
    """Quantity.MilliValue(): rounds up, so 0.0001 CPU is 1m."""
    return math.ceil(value * 1000)


def _bytes(value: Fraction) -> int:
    """Quantity.Value(): rounds up."""
    return math.ceil(value)


# --- the pod's effective requests and limits ----------------------------------------

def pod_requests(pod: Pod) -> dict[str, Fraction]:
    """PodRequests (component-helpers/resource): what the pod needs at its peak.

    App containers run together, so their requests add up; init containers run
    one at a time before them, so each only has to fit on its own: the pod
    needs ``max(sum(app containers), max(each init container))`` per resource.
    """
    return _aggregate(pod, "requests")


def pod_limits(pod: Pod) -> dict[str, Fraction]:
    """PodLimits: the same sum-then-max over the limits that are set."""
    return _aggregate(pod, "limits")


def _aggregate(pod: Pod, which: str) -> dict[str, Fraction]:
    total: dict[str, Fraction] = {}
    for c in pod.containers:
        for name, q in getattr(c.resources, which).items():
            total[name] = total.get(name, Fraction(0)) + q.value
    for c in pod.init_containers:
        for name, q in getattr(c.resources, which).items():
            if name not in total or q.value > total[name]:
                total[name] = q.value
    return total


# --- what the machine's cgroups can do ------------------------------------------------

@dataclass(frozen=True)
class CgroupFacts:
    """The few facts about the node's cgroups that change what the kubelet writes."""
    hugepage_sizes: tuple[str, ...] = ()   # OCI names ("2MB", "1GB") if hugetlb is usable
    swap_control: bool = False             # memory.memsw.* (v1) or memory.swap.max (v2)
    unified: bool = False                  # a pure cgroup v2 machine


@cache
def cgroup_facts() -> CgroupFacts:
    """Read them from this machine (once): the hugetlb controller and its page sizes
    (/sys/kernel/mm/hugepages), and whether swap is accounted (swapControllerAvailable)."""
    from minirun.cgroups import detect_layout
    from minirun.config.resources import hugepage_sizes

    layout = detect_layout()
    sizes = tuple(hugepage_sizes()) if layout.for_role("hugetlb") else ()
    memory = layout.for_role("memory")
    swap = False
    if memory is not None and memory.version == 1:
        swap = os.path.exists(os.path.join(memory.mountpoint, "memory.memsw.limit_in_bytes"))
    elif memory is not None:
        swap = os.path.exists(os.path.join(memory.own_dir, "memory.swap.max"))
    return CgroupFacts(sizes, swap, layout.kind == "v2")


def _hugepage_limits(limits: dict[str, int], facts: CgroupFacts) -> list[dict]:
    """Every page size the machine has, limited to 0 unless the pod asks for it
    (GetHugepageLimitsFromResources; cgroupManager.Update does the same for pods)."""
    return [{"pageSize": size, "limit": limits.get(size, 0)} for size in facts.hugepage_sizes]


def _by_page_size(values: dict[str, Fraction]) -> dict[str, int]:
    """{"hugepages-2Mi": 4Mi} -> {"2MB": 4194304}: the OCI names of the kernel's files."""
    return {page_size_name(HUGEPAGE_SIZES[name]): _bytes(v) for name, v in values.items()
            if name in HUGEPAGE_SIZES}


# --- the values each cgroup gets ------------------------------------------------------

def pod_resources(pod: Pod, facts: CgroupFacts | None = None) -> dict:
    """ResourceConfigForPod (pkg/kubelet/cm/helpers_linux.go): the pod cgroup's limits.

    - cpu.shares from the pod's cpu request (BestEffort: always 2);
    - quota from the pod's cpu limit, only if every container has one
      (Guaranteed pods always do);
    - memory limit, only if every container has one;
    - huge pages: the pod's requests, every other page size 0.
    """
    facts = facts or cgroup_facts()
    reqs, limits = pod_requests(pod), pod_limits(pod)
    every = pod.all_containers()
    cpu_limits_declared = all(c.resources.limits.get(CPU) is not None
                              and c.resources.limits[CPU].value != 0 for c in every)
    memory_limits_declared = all(c.resources.limits.get(MEMORY) is not None
                                 and c.resources.limits[MEMORY].value != 0 for c in every)
    shares = milli_cpu_to_shares(_milli(reqs.get(CPU, Fraction(0))))
    quota = milli_cpu_to_quota(_milli(limits.get(CPU, Fraction(0))))
    memory = _bytes(limits.get(MEMORY, Fraction(0)))
    qos = qos_class(pod)
    out: dict = {}
    if qos == GUARANTEED:
        out["cpu"] = {"shares": shares, "quota": quota, "period": QUOTA_PERIOD}
        out["memory"] = {"limit": memory}
    elif qos == BURSTABLE:
        out["cpu"] = {"shares": shares}
        if cpu_limits_declared:
            out["cpu"].update(quota=quota, period=QUOTA_PERIOD)
        if memory_limits_declared:
            out["memory"] = {"limit": memory}
    else:
        out["cpu"] = {"shares": MIN_SHARES}
    hugepages = _hugepage_limits(_by_page_size(reqs), facts)
    if hugepages:
        out["hugepageLimits"] = hugepages
    return out


def container_resources(pod: Pod, container: Container,
                        facts: CgroupFacts | None = None) -> dict:
    """generateLinuxContainerResources + calculateLinuxResources (kuberuntime), and
    containerd's WithResources: one container's cgroup.

    - cpu.shares from the container's cpu request (none: 2);
    - cpu.cfs_period_us always 100000, a quota only with a cpu limit;
    - memory limit if set; with swap accounting the kubelet's default NoSwap:
      v1 memory+swap = the memory limit, v2 memory.swap.max = 0;
    - every huge page size limited, to 0 unless the container asks for it;
    - on pure v2, memory.oom.group = 1: an OOM kills the whole container.
    """
    facts = facts or cgroup_facts()
    res = container.resources
    cpu_request = res.requests[CPU].value if CPU in res.requests else Fraction(0)
    cpu_limit = res.limits[CPU].value if CPU in res.limits else Fraction(0)
    out: dict = {"cpu": {"shares": milli_cpu_to_shares(_milli(cpu_request)),
                         "period": QUOTA_PERIOD}}
    quota = milli_cpu_to_quota(_milli(cpu_limit))
    if quota:
        out["cpu"]["quota"] = quota
    memory = _bytes(res.limits[MEMORY].value) if MEMORY in res.limits else 0
    if memory:
        out["memory"] = {"limit": memory}
        if facts.swap_control and not facts.unified:
            out["memory"]["swap"] = memory
    limits = {name: q.value for name, q in res.limits.items()}
    hugepages = _hugepage_limits(_by_page_size(limits), facts)
    if hugepages:
        out["hugepageLimits"] = hugepages
    if facts.unified:
        out["unified"] = {"memory.oom.group": "1"}
        if facts.swap_control:
            out["unified"]["memory.swap.max"] = "0"
    return out


def sandbox_resources() -> dict:
    """The pause container's own cgroup: containerd's WithDefaultSandboxShares (2);
    everything else it gets from the pod cgroup above it."""
    return {"cpu": {"shares": SANDBOX_CPU_SHARES}}


def qos_level_resources(qos: str, pods: list[Pod]) -> dict:
    """setCPUCgroupConfig (qos_container_manager_linux.go): the QoS-level cgroups.

    kubepods/besteffort always has 2 shares; kubepods/burstable has the shares of
    the summed cpu requests of every Burstable pod on the node, updated as pods
    come and go. (Guaranteed pods sit in kubepods itself: see node.kubepods_resources.)
    """
    if qos == BEST_EFFORT:
        return {"cpu": {"shares": MIN_SHARES}}
    if qos != BURSTABLE:
        raise MinirunError(f"{qos} pods have no QoS-level cgroup of their own")
    milli = sum(_milli(pod_requests(p).get(CPU, Fraction(0))) for p in pods
                if qos_class(p) == BURSTABLE)
    return {"cpu": {"shares": milli_cpu_to_shares(milli)}}


# --- oom_score_adj ----------------------------------------------------------------------

def oom_score_adj(pod: Pod, container: Container, memory_capacity: int) -> int:
    """GetContainerOOMScoreAdjust (pkg/kubelet/qos/policy.go).

    Guaranteed (and node-critical) containers: -997, killed last; BestEffort:
    1000, killed first. Burstable: ``1000 - 1000 * memoryRequest / capacity``
    in integers, so a container requesting 10% of the machine gets 900; then
    clamped to 3..999 (above Guaranteed's 1000 - 997, below BestEffort).
    ``memory_capacity`` is the machine's MemTotal in bytes (node.memory_capacity()).
    """
    if pod.priority_class_name == NODE_CRITICAL:
        return GUARANTEED_OOM_SCORE_ADJ    # IsNodeCriticalPod: minirun's pods are static
    qos = qos_class(pod)
    if qos == GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == BEST_EFFORT:
        return BEST_EFFORT_OOM_SCORE_ADJ
    request = container.resources.requests.get(MEMORY)
    memory_request = _bytes(request.value) if request is not None else 0
    adjust = 1000 - (1000 * memory_request) // memory_capacity
    if adjust < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adjust == BEST_EFFORT_OOM_SCORE_ADJ:
        return adjust - 1
    return adjust


def restrict_oom_score_adj(value: int) -> int:
    """What this process can actually give a child: containerd's restrict_oom_score_adj.

    Lowering oom_score_adj below a task's oom_score_adj_min needs CAP_SYS_RESOURCE
    (proc(5); the kernel answers EACCES). Without it, as in an unprivileged or
    restricted runtime, containerd raises the value to its own; so does this.
    """
    with open("/proc/self/status") as fh:
        effective = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    if effective & (1 << CAP_SYS_RESOURCE):
        return value
    with open("/proc/self/oom_score_adj") as fh:
        return max(value, int(fh.read()))


# --- cgroup paths ------------------------------------------------------------------------

def qos_cgroup_path(qos: str) -> str:
    """Guaranteed pods go straight into kubepods; the others into their QoS cgroup."""
    return QOS_CGROUPS[qos]


def pod_cgroup_path(pod: Pod) -> str:
    """``kubepods/burstable/pod<UID>``: relative, so it goes below minirun's cgroup root."""
    return f"{qos_cgroup_path(qos_class(pod))}/{POD_CGROUP_PREFIX}{pod.uid}"


def container_cgroup_path(pod: Pod, name: str) -> str:
    """A container's cgroup inside its pod's: ``kubepods/pod<UID>/<container name>``.
    (The kubelet names it by the runtime's container ID; a name is easier to read.)"""
    try:
        pod.container(name)
    except KeyError:
        raise MinirunError(f"pod {pod.name!r} has no container {name!r}") from None
    return f"{pod_cgroup_path(pod)}/{name}"


def sandbox_cgroup_path(pod: Pod) -> str:
    """The pause container's cgroup, inside the pod's like any container's."""
    return f"{pod_cgroup_path(pod)}/{SANDBOX_CGROUP}"
