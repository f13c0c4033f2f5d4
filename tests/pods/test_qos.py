"""The kubelet's numbers: QoS class, shares, quota, pod and container cgroups, oom_score_adj.

Expected values are worked out here from the kubelet's formulas (each test says
which), never by calling the code under test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from minirun.config.pod import parse_pod
from minirun.config.resources import parse_resources
from minirun.errors import MinirunError
from minirun.pod import qos
from minirun.pod.qos import CgroupFacts

MI = 1 << 20
GIB = 1 << 30
HYBRID = CgroupFacts(hugepage_sizes=("2MB", "1GB"), swap_control=True, unified=False)
PURE_V2 = CgroupFacts(hugepage_sizes=("2MB",), swap_control=True, unified=True)
NO_EXTRAS = CgroupFacts()


def make_pod(*containers, init=(), **spec):
    """containers: (name, requests, limits) triples."""
    def entry(name, requests, limits):
        res = {}
        if requests:
            res["requests"] = requests
        if limits:
            res["limits"] = limits
        return {"name": name, "image": "busybox", "resources": res}
    return parse_pod({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "p", "uid": "1234-abcd"},
                      "spec": {"containers": [entry(*c) for c in containers],
                               "initContainers": [entry(*c) for c in init], **spec}})


GUARANTEED = make_pod(("a", None, {"cpu": "500m", "memory": "64Mi"}),
                      ("b", {"cpu": "250m", "memory": "32Mi"},
                       {"cpu": "250m", "memory": "32Mi"}))


# --- QoS class (ComputePodQOS) ----------------------------------------------------------

@pytest.mark.parametrize("containers, init, expected", [
    ([("a", None, None)], [], "BestEffort"),
    ([("a", None, None), ("b", None, None)], [], "BestEffort"),
    ([("a", None, {"cpu": "1", "memory": "1Gi"})], [], "Guaranteed"),
    ([("a", {"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})], [], "Guaranteed"),
    ([("a", {"cpu": "1"}, None)], [], "Burstable"),
    ([("a", None, {"memory": "1Gi"})], [], "Burstable"),           # no cpu: not Guaranteed
    ([("a", {"cpu": "500m", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"})], [],
     "Burstable"),
    ([("a", None, {"cpu": "1", "memory": "1Gi"}), ("b", None, None)], [], "Burstable"),
    # init containers count
    ([("a", None, {"cpu": "1", "memory": "1Gi"})], [("i", {"cpu": "1"}, None)], "Burstable"),
    ([("a", None, None)], [("i", None, {"cpu": "1", "memory": "1Gi"})], "Burstable"),
    ([("a", None, {"cpu": "1", "memory": "1Gi"})],
     [("i", None, {"cpu": "2", "memory": "2Gi"})], "Guaranteed"),
    # huge pages do not count for QoS
    ([("a", None, {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "4Mi"})], [], "Guaranteed"),
    # 1000m and 1 are the same quantity
    ([("a", {"cpu": "1000m", "memory": "1Gi"}, {"cpu": "1", "memory": "1024Mi"})], [],
     "Guaranteed"),
])
def test_qos_class(containers, init, expected):
    assert qos.qos_class(make_pod(*containers, init=init)) == expected


# --- MilliCPUToShares, MilliCPUToQuota ---------------------------------------------------

@pytest.mark.parametrize("milli, expected", [
    (0, 2),                  # no request: MinShares
    (1, 2),                  # 1 * 1024 / 1000 = 1, raised to MinShares
    (2, 2),
    (3, 3),                  # 3072 / 1000 = 3
    (250, 256),              # 256000 / 1000
    (1000, 1024),
    (1500, 1536),
    (999, 1022),             # 1022976 / 1000, truncated
    (300000, 262144),        # 307200 capped at MaxShares
])
def test_milli_cpu_to_shares(milli, expected):
    assert qos.milli_cpu_to_shares(milli) == expected


@pytest.mark.parametrize("milli, expected", [
    (0, 0),                  # no limit: no quota
    (1, 1000),               # 100 us raised to the 1 ms minimum
    (10, 1000),              # exactly the minimum
    (250, 25000),            # 250 * 100000 / 1000
    (1000, 100000),
    (2500, 250000),
])
def test_milli_cpu_to_quota(milli, expected):
    assert qos.milli_cpu_to_quota(milli) == expected


# --- pod-level: ResourceConfigForPod ---------------------------------------------------

def test_guaranteed_pod_sums_its_containers():
    # requests and limits 500m + 250m = 750m, 64Mi + 32Mi = 96Mi
    assert qos.pod_resources(GUARANTEED, NO_EXTRAS) == {
        "cpu": {"shares": 750 * 1024 // 1000, "quota": 750 * 100, "period": 100000},
        "memory": {"limit": 96 * MI}}


def test_init_container_maximum():
    # app containers sum to 300m / 100Mi; the init container alone needs 1 CPU / 50Mi:
    # the pod needs max(300m, 1000m) = 1000m and max(100Mi, 50Mi) = 100Mi
    pod = make_pod(("a", {"cpu": "100m"}, {"cpu": "200m", "memory": "60Mi"}),
                   ("b", {"cpu": "200m"}, {"cpu": "300m", "memory": "40Mi"}),
                   init=[("i", {"cpu": "1"}, {"cpu": "1", "memory": "50Mi"})])
    assert qos.qos_class(pod) == "Burstable"
    reqs, limits = qos.pod_requests(pod), qos.pod_limits(pod)
    assert reqs["cpu"] == 1 and reqs["memory"] == 100 * MI
    assert limits["cpu"] == 1 and limits["memory"] == 100 * MI
    # shares from max(300m, 1000m); quota from max(200m+300m, 1000m); memory limits are
    # declared by every container (init included)
    assert qos.pod_resources(pod, NO_EXTRAS) == {
        "cpu": {"shares": 1024, "quota": 100000, "period": 100000},
        "memory": {"limit": 100 * MI}}


def test_burstable_pod_without_cpu_limits_everywhere_gets_no_quota():
    pod = make_pod(("a", {"cpu": "250m", "memory": "64Mi"}, {"memory": "128Mi"}),
                   ("b", None, {"cpu": "1", "memory": "32Mi"}))
    # cpu requests: 250m + 1000m (b's request defaults to its limit)
    assert qos.pod_resources(pod, NO_EXTRAS) == {
        "cpu": {"shares": 1250 * 1024 // 1000},
        "memory": {"limit": 160 * MI}}


def test_burstable_pod_without_memory_limits_everywhere_gets_no_memory_limit():
    pod = make_pod(("a", {"cpu": "100m"}, {"cpu": "200m"}),
                   ("b", None, {"cpu": "300m", "memory": "32Mi"}))
    assert qos.pod_resources(pod, NO_EXTRAS) == {
        "cpu": {"shares": 400 * 1024 // 1000, "quota": 500 * 100, "period": 100000}}


def test_burstable_init_container_without_limit_cancels_the_pod_quota():
    pod = make_pod(("a", None, {"cpu": "1", "memory": "64Mi"}),
                   init=[("i", {"cpu": "100m"}, None)])
    assert "quota" not in qos.pod_resources(pod, NO_EXTRAS)["cpu"]


def test_best_effort_pod_gets_min_shares_only():
    pod = make_pod(("a", None, None), ("b", None, None))
    assert qos.pod_resources(pod, NO_EXTRAS) == {"cpu": {"shares": 2}}


def test_pod_huge_pages_are_requests_and_other_sizes_zero():
    pod = make_pod(("a", None, {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "4Mi"}),
                   ("b", None, {"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "6Mi"}))
    assert qos.pod_resources(pod, HYBRID)["hugepageLimits"] == [
        {"pageSize": "2MB", "limit": 10 * MI}, {"pageSize": "1GB", "limit": 0}]


# --- container-level: calculateLinuxResources --------------------------------------------

def test_guaranteed_container():
    a = GUARANTEED.container("a")
    assert qos.container_resources(GUARANTEED, a, NO_EXTRAS) == {
        "cpu": {"shares": 512, "period": 100000, "quota": 50000},
        "memory": {"limit": 64 * MI}}


def test_best_effort_container_has_min_shares_and_the_period_but_no_quota():
    pod = make_pod(("a", None, None))
    assert qos.container_resources(pod, pod.container("a"), NO_EXTRAS) == {
        "cpu": {"shares": 2, "period": 100000}}


def test_swap_follows_the_memory_limit_on_v1():
    # ConfigureNoSwap on cgroup v1: memory+swap = memory, so no swap at all
    a = GUARANTEED.container("a")
    res = qos.container_resources(GUARANTEED, a, HYBRID)
    assert res["memory"] == {"limit": 64 * MI, "swap": 64 * MI}
    assert res["hugepageLimits"] == [{"pageSize": "2MB", "limit": 0},
                                     {"pageSize": "1GB", "limit": 0}]
    assert "unified" not in res


def test_pure_v2_container_gets_oom_group_and_no_swap():
    pod = make_pod(("a", {"cpu": "100m"}, {"hugepages-2Mi": "2Mi"}))
    res = qos.container_resources(pod, pod.container("a"), PURE_V2)
    assert res["unified"] == {"memory.oom.group": "1", "memory.swap.max": "0"}
    assert "memory" not in res                   # no memory limit, no swap field
    assert res["hugepageLimits"] == [{"pageSize": "2MB", "limit": 2 * MI}]


def test_fractional_cpu_rounds_up_to_a_millicore():
    pod = make_pod(("a", {"cpu": "0.0001"}, {"cpu": "0.0001"}))
    res = qos.container_resources(pod, pod.container("a"), NO_EXTRAS)
    # MilliValue rounds 0.1m up to 1m: shares max(1024 // 1000, 2), quota max(100, 1000)
    assert res["cpu"] == {"shares": 2, "period": 100000, "quota": 1000}


@pytest.mark.parametrize("facts", [NO_EXTRAS, HYBRID])
def test_every_output_is_accepted_by_the_oci_parser(facts):
    pods = [GUARANTEED, make_pod(("a", {"cpu": "1m"}, {"memory": "1Gi"})),
            make_pod(("a", None, None))]
    for pod in pods:
        parse_resources(qos.pod_resources(pod, facts))
        for c in pod.all_containers():
            parse_resources(qos.container_resources(pod, c, facts))
    parse_resources(qos.sandbox_resources())


def test_qos_level_cgroups():
    burstable = [make_pod(("a", {"cpu": "300m"}, None)), make_pod(("a", {"cpu": "200m"}, None))]
    # 300m + 200m of Burstable requests; the Guaranteed pod does not count
    assert qos.qos_level_resources("Burstable", [*burstable, GUARANTEED]) == \
        {"cpu": {"shares": 512}}
    assert qos.qos_level_resources("BestEffort", burstable) == {"cpu": {"shares": 2}}
    with pytest.raises(MinirunError):
        qos.qos_level_resources("Guaranteed", [])


# --- oom_score_adj: GetContainerOOMScoreAdjust -------------------------------------------

def test_guaranteed_and_best_effort_oom_score_adj():
    assert qos.oom_score_adj(GUARANTEED, GUARANTEED.container("a"), 8 * GIB) == -997
    pod = make_pod(("a", None, None))
    assert qos.oom_score_adj(pod, pod.container("a"), 8 * GIB) == 1000


@pytest.mark.parametrize("request_, capacity, expected", [
    ("1Gi", 10 * GIB, 1000 - (1000 * GIB) // (10 * GIB)),      # 900: 10% of the machine
    ("64Mi", 24 * GIB, 1000 - (1000 * 64 * MI) // (24 * GIB)),  # 998
    ("1Mi", 24 * GIB, 999),          # 1000 - 0 = 1000 is BestEffort's: lowered to 999
    ("8Gi", 8 * GIB, 3),             # 1000 - 1000 = 0, raised to 1000 - 997
    ("9Gi", 8 * GIB, 3),             # asks for more than the machine: still 3
    # Value() rounds 7.9Gi (a fraction of a byte) up before the integer division
    ("7.9Gi", 8 * GIB, 1000 - (1000 * math.ceil(Fraction(79, 10) * GIB)) // (8 * GIB)),
])
def test_burstable_oom_score_adj(request_, capacity, expected):
    pod = make_pod(("a", {"memory": request_}, None))
    assert qos.oom_score_adj(pod, pod.container("a"), capacity) == expected


def test_burstable_container_without_memory_request_is_999():
    pod = make_pod(("a", {"cpu": "1"}, None), ("b", {"memory": "1Gi"}, None))
    assert qos.oom_score_adj(pod, pod.container("a"), 8 * GIB) == 999
    assert qos.oom_score_adj(pod, pod.container("b"), 8 * GIB) == 875


def test_node_critical_static_pod_is_protected():
    pod = make_pod(("a", None, None), priorityClassName="system-node-critical")
    assert qos.oom_score_adj(pod, pod.container("a"), 8 * GIB) == -997


def test_restrict_oom_score_adj_follows_cap_sys_resource():
    with open("/proc/self/status") as fh:
        eff = int(next(line for line in fh if line.startswith("CapEff:")).split()[1], 16)
    with open("/proc/self/oom_score_adj") as fh:
        own = int(fh.read())
    has_sys_resource = bool(eff & (1 << 24))
    assert qos.restrict_oom_score_adj(-998) == (-998 if has_sys_resource else max(-998, own))
    assert qos.restrict_oom_score_adj(1000) == 1000


# --- cgroup names --------------------------------------------------------------------------

def test_cgroup_paths():
    assert qos.pod_cgroup_path(GUARANTEED) == "kubepods/pod1234-abcd"
    burstable = make_pod(("a", {"cpu": "1"}, None))
    assert qos.pod_cgroup_path(burstable) == "kubepods/burstable/pod1234-abcd"
    assert qos.container_cgroup_path(burstable, "a") == "kubepods/burstable/pod1234-abcd/a"
    assert qos.sandbox_cgroup_path(burstable) == "kubepods/burstable/pod1234-abcd/_pause"
    best = make_pod(("a", None, None))
    assert qos.pod_cgroup_path(best) == "kubepods/besteffort/pod1234-abcd"
    with pytest.raises(MinirunError, match="no container 'zz'"):
        qos.container_cgroup_path(best, "zz")
