"""The node: capacity from /proc and /sys, allocatable, admission reasons, the swap check.

Fake /proc and /sys trees stand in for machines this one is not (swap on,
huge pages reserved); the real machine is read once and compared with what
/proc/meminfo and os.cpu_count() say.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minirun.config.pod import parse_pod
from minirun.errors import ConfigError, MinirunError
from minirun.pod import node

MI = 1 << 20
GI = 1 << 30


def fake_machine(tmp_path: Path, mem_kib: int, pages_2m: int = 0, pages_1g: int = 0,
                 swaps: str = "") -> tuple[str, str]:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    (proc / "meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree:   1 kB\n")
    (proc / "swaps").write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n" + swaps)
    for name, count in (("hugepages-2048kB", pages_2m), ("hugepages-1048576kB", pages_1g),
                        ("hugepages-64kB", 7)):         # a size the kubelet does not name
        d = sys / "kernel/mm/hugepages" / name
        d.mkdir(parents=True)
        (d / "nr_hugepages").write_text(f"{count}\n")
    return str(proc), str(sys)


def pod_requesting(cpu: str | None = None, memory: str | None = None,
                   hugepages: str | None = None):
    limits = {k: v for k, v in (("cpu", cpu), ("memory", memory), ("hugepages-2Mi", hugepages))
              if v}
    return parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                      "spec": {"containers": [{"name": "a", "image": "busybox",
                                               "resources": {"limits": limits}}]}})


def test_capacity_of_a_fake_machine(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=8 * 1024 * 1024, pages_2m=4, pages_1g=1)
    assert node.capacity(proc, sys, cpus=4) == {
        "cpu": 4000, "memory": 8 * GI, "hugepages-2Mi": 4 * 2 * MI, "hugepages-1Gi": GI,
        "pods": 110}


def test_capacity_of_this_machine():
    with open("/proc/meminfo") as fh:
        mem_kib = int(next(line for line in fh if line.startswith("MemTotal:")).split()[1])
    cap = node.capacity()
    assert cap["cpu"] == os.cpu_count() * 1000
    assert cap["memory"] == mem_kib * 1024
    assert cap["pods"] == 110
    for size_kib, name in ((2048, "hugepages-2Mi"), (1048576, "hugepages-1Gi")):
        path = f"/sys/kernel/mm/hugepages/hugepages-{size_kib}kB/nr_hugepages"
        if os.path.exists(path):
            with open(path) as fh:
                assert cap[name] == int(fh.read()) * size_kib * 1024


def test_allocatable_subtracts_reservations_eviction_and_huge_pages(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=8 * 1024 * 1024, pages_2m=512)   # 1 GiB
    cap = node.capacity(proc, sys, cpus=2)
    config = node.NodeConfig(kube_reserved=node.parse_reserved("cpu=100m,memory=256Mi"),
                             system_reserved=node.parse_reserved("cpu=0.5", "--system-reserved"),
                             eviction_hard=node.parse_eviction_hard("memory.available<100Mi"))
    alloc = node.allocatable(cap, config)
    assert alloc["cpu"] == 2000 - 100 - 500
    assert alloc["memory"] == 8 * GI - 256 * MI - 100 * MI - 512 * 2 * MI
    assert alloc["hugepages-2Mi"] == GI
    assert alloc["pods"] == 110


def test_default_eviction_threshold_is_100mi(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=4 * 1024 * 1024)
    cap = node.capacity(proc, sys, cpus=1)
    assert node.allocatable(cap)["memory"] == 4 * GI - 100 * MI


def test_percentage_eviction_threshold_like_the_kubelet(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=24684084)
    cap = node.capacity(proc, sys, cpus=1)
    config = node.NodeConfig(eviction_hard=node.parse_eviction_hard("memory.available<10%"))
    # GetThresholdQuantity: int64(float64(capacity) * float64(float32(10) / 100)); float32
    # 0.1 is 13421773 / 2**27, so the product is the capacity times that, truncated
    expected = 24684084 * 1024 - (24684084 * 1024 * 13421773) // 2**27
    assert node.allocatable(cap, config)["memory"] == expected


def test_allocatable_never_goes_below_zero(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=1024)
    cap = node.capacity(proc, sys, cpus=1)
    config = node.NodeConfig(kube_reserved={"cpu": 5000, "memory": GI})
    assert node.allocatable(cap, config)["cpu"] == 0
    assert node.allocatable(cap, config)["memory"] == 0


@pytest.mark.parametrize("text, where", [
    ("cpu", "--kube-reserved"),
    ("gpu=1", "--kube-reserved gpu"),
    ("memory=1GB", "--kube-reserved memory"),
    ("memory=-1Mi", "--kube-reserved memory"),
])
def test_bad_reservations(text, where):
    with pytest.raises(ConfigError) as err:
        node.parse_reserved(text)
    assert err.value.where == where


@pytest.mark.parametrize("text", ["memory.available=100Mi", "memory.free<1Gi",
                                  "memory.available<110%", "memory.available<x%",
                                  "memory.available<1e40%", "memory.available<1GB"])
def test_bad_eviction_thresholds(text):
    with pytest.raises(ConfigError, match="--eviction-hard"):
        node.parse_eviction_hard(text)


def test_other_eviction_signals_do_not_touch_memory(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=1024 * 1024)
    cap = node.capacity(proc, sys, cpus=1)
    config = node.NodeConfig(eviction_hard=node.parse_eviction_hard(
        "nodefs.available<10%,imagefs.available<15%"))
    assert node.allocatable(cap, config)["memory"] == GI


# --- admission ------------------------------------------------------------------------------

ALLOC = {"cpu": 1900, "memory": 2 * GI, "hugepages-2Mi": 4 * MI, "hugepages-1Gi": 0,
         "pods": 3}


def test_a_pod_that_fits_is_admitted():
    assert node.admit(pod_requesting("1", "1Gi"), ALLOC, {"cpu": 500, "memory": GI,
                                                          "pods": 1}) == []


def test_out_of_cpu_and_memory_with_the_kubelets_message():
    reasons = node.admit(pod_requesting("2", "1536Mi"), ALLOC,
                         {"cpu": 500, "memory": GI, "pods": 1})
    assert reasons == [
        "OutOfcpu: Node didn't have enough resource: cpu, requested: 2000, used: 500, "
        "capacity: 1900",
        f"OutOfmemory: Node didn't have enough resource: memory, requested: {1536 * MI}, "
        f"used: {GI}, capacity: {2 * GI}"]


def test_out_of_huge_pages_and_pods():
    reasons = node.admit(pod_requesting("100m", "1Mi", hugepages="6Mi"), ALLOC, {"pods": 3})
    assert [r.split(":")[0] for r in reasons] == ["OutOfpods", "OutOfhugepages-2Mi"]


def test_best_effort_pod_needs_only_a_pod_slot():
    assert node.admit(pod_requesting(), ALLOC, {"cpu": 1900, "memory": 2 * GI, "pods": 2}) == []
    assert node.admit(pod_requesting(), ALLOC, {"pods": 3})[0].startswith("OutOfpods")


def test_request_totals_round_up():
    totals = node.pod_request_totals(pod_requesting("0.0005", "0.5"))
    assert totals == {"cpu": 1, "memory": 1, "pods": 1}


# --- swap -------------------------------------------------------------------------------------

def test_swap_check(tmp_path):
    off = tmp_path / "off"
    off.mkdir()
    proc, _ = fake_machine(off, mem_kib=1024)
    assert not node.swap_enabled(proc)
    node.check_swap(True, proc)
    on = tmp_path / "on"
    on.mkdir()
    proc_on, _ = fake_machine(on, mem_kib=1024,
                              swaps="/swapfile  file  1048572  0  -2\n")
    assert node.swap_enabled(proc_on)
    with pytest.raises(MinirunError, match="running with swap on is not supported, please "
                                           "disable swap"):
        node.check_swap(True, proc_on)
    node.check_swap(False, proc_on)          # --fail-swap-on=false


def test_this_machine_swap_matches_proc_swaps():
    with open("/proc/swaps") as fh:
        active = [line for line in fh.read().splitlines()[1:] if line.strip()]
    assert node.swap_enabled() == bool(active)


def test_describe_rows(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=24684084, pages_2m=2)
    cap = node.capacity(proc, sys, cpus=2)
    alloc = node.allocatable(cap, node.NodeConfig(kube_reserved={"cpu": 100}))
    assert node.describe(cap, alloc) == [
        ("cpu", "2", "1900m"),
        ("memory", "24684084Ki", f"{24684084 - 100 * 1024 - 4 * 1024}Ki"),
        ("hugepages-2Mi", "4Mi", "4Mi"),
        ("hugepages-1Gi", "0", "0"),
        ("pods", "110", "110")]


def test_kubepods_cgroup_gets_allocatable_without_eviction(tmp_path):
    proc, sys = fake_machine(tmp_path, mem_kib=8 * 1024 * 1024, pages_2m=2)
    cap = node.capacity(proc, sys, cpus=2)
    config = node.NodeConfig(kube_reserved={"cpu": 500, "memory": GI})
    assert node.kubepods_resources(cap, config) == {
        "cpu": {"shares": 1500 * 1024 // 1000},
        "memory": {"limit": 7 * GI},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MI},
                           {"pageSize": "1GB", "limit": 0}]}
