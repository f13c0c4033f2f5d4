"""Parsing linux.resources: every bad value is reported with its JSON path, before any
cgroup exists."""

from __future__ import annotations

import re

import pytest

from minirun.config.resources import (
    DeviceRule,
    HugepageLimit,
    hugepage_sizes,
    online,
    parse_cpu_list,
    parse_resources,
)
from minirun.errors import ConfigError


def test_a_full_object_becomes_dataclasses():
    res = parse_resources({
        "cpu": {"shares": 512, "quota": -1, "period": 100000, "burst": 0, "cpus": "0",
                "mems": "0", "idle": 0},
        "memory": {"limit": 1 << 30, "reservation": -1, "swap": -1, "swappiness": 0,
                   "disableOOMKiller": False, "checkBeforeUpdate": True},
        "pids": {"limit": 64},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "blockIO": {"weight": 300},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rw"}],
        "unified": {"memory.high": "max"},
    })
    assert (res.cpu.shares, res.cpu.quota, res.cpu.cpus) == (512, -1, "0")
    assert (res.memory.limit, res.memory.swap, res.memory.disable_oom_killer) == (1 << 30, -1,
                                                                                  False)
    assert res.pids_limit == 64
    assert res.hugepage_limits == [HugepageLimit("2MB", 4 << 20)]
    assert res.block_io_weight == 300
    assert res.devices == [DeviceRule(False, "a", None, None, "rwm"),
                           DeviceRule(True, "c", 136, None, "rw")]
    assert [str(d) for d in res.devices] == ["a *:* rwm", "c 136:* rw"]
    assert res.unified == {"memory.high": "max"}


def test_absent_means_untouched():
    res = parse_resources({"cpu": {"quota": 20000}})
    assert res.cpu.period is None and res.memory is None and res.pids_limit is None
    assert parse_resources(None) == parse_resources({})


BAD = [
    ({"cpu": {"quota": 500}}, "cpu.quota", "below 1000 us"),
    ({"cpu": {"quota": 0}}, "cpu.quota", "below 1000 us"),
    ({"cpu": {"period": 999}}, "cpu.period", "outside 1000..1000000"),
    ({"cpu": {"period": 1000001}}, "cpu.period", "outside 1000..1000000"),
    ({"cpu": {"shares": 1}}, "cpu.shares", "outside 2..262144"),
    ({"cpu": {"quota": 10000, "burst": 20000}}, "cpu.burst", "above the quota"),
    ({"cpu": {"idle": 2}}, "cpu.idle", "expected 0 or 1"),
    ({"cpu": {"cpus": "0-1,x"}}, "cpu.cpus", "not a list"),
    ({"cpu": {"cpus": "4096"}}, "cpu.cpus", "CPUs 4096 do not exist"),
    ({"cpu": {"mems": "0-63"}}, "cpu.mems", "memory nodes .* do not exist"),
    ({"cpu": {"quota": "10000"}}, "cpu.quota", 'expected an integer, got "10000"'),
    ({"cpu": {"quotas": 10000}}, "cpu.quotas", "unknown field"),
    ({"memory": {"limit": -5}}, "memory.limit", "negative; use -1 for no limit"),
    ({"memory": {"limit": 0}}, "memory.limit", "0 bytes would allow nothing"),
    ({"memory": {"limit": 1 << 20, "swap": 1 << 10}}, "memory.swap", "below limit"),
    ({"memory": {"swappiness": 101}}, "memory.swappiness", "outside 0..100"),
    ({"memory": {"kernel": 1 << 20}}, "memory.kernel", "not supported by minirun"),
    ({"memory": {"useHierarchy": False}}, "memory.useHierarchy", "always"),
    ({"memory": {"disableOOMKiller": 1}}, "memory.disableOOMKiller", "true or false"),
    ({"pids": {"limit": 0}}, "pids.limit", "would forbid every fork"),
    ({"pids": {"limit": -2}}, "pids.limit", "negative"),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 3 << 20}]}, r"hugepageLimits\[0\].limit",
     "not a multiple of the page size"),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "2MB", "limit": 0}]},
     r"hugepageLimits\[1\].pageSize", "listed twice"),
    ({"blockIO": {"weight": 5}}, "blockIO.weight", "outside 10..1000"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}},
     "blockIO.throttleReadBpsDevice", "not supported by minirun"),
    ({"devices": [{"type": "c"}]}, r"devices\[0\].allow", "is required"),
    ({"devices": [{"allow": True, "type": "x"}]}, r"devices\[0\].type", "expected a, c or b"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, r"devices\[0\].access", "letters of rwm"),
    ({"network": {"classID": 1}}, "network", "not supported by minirun"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "rdma", "not supported by minirun"),
    ({"unified": {"../memory.max": "1"}}, r"unified\.\.\./memory\.max", "cgroup v2 file name"),
    ({"cpu": []}, "cpu", "expected an object"),
    ({"frobnicate": 1}, "frobnicate", "unknown field"),
]


@pytest.mark.parametrize(("obj", "field", "message"), BAD)
def test_bad_values_name_their_field(obj, field, message):
    with pytest.raises(ConfigError) as info:
        parse_resources(obj)
    assert re.match(rf"linux\.resources\.{field}: .*{message}", str(info.value)), str(info.value)


def test_unknown_huge_page_size_lists_the_machine_sizes():
    sizes = hugepage_sizes()
    with pytest.raises(ConfigError) as info:
        parse_resources({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]})
    assert str(info.value) == (
        "linux.resources.hugepageLimits[0].pageSize: unknown huge page size '3MB' (this "
        f"machine has: {', '.join(sizes) or 'none'}; see /sys/kernel/mm/hugepages)")


def test_where_prefix_is_the_callers():
    with pytest.raises(ConfigError, match=r"^update --resources\.cpu\.quota: "):
        parse_resources({"cpu": {"quota": 1}}, "update --resources")


def test_cpu_lists():
    assert parse_cpu_list("0-2,5", "x") == {0, 1, 2, 5}
    assert 0 in online("cpu")
    with pytest.raises(ConfigError, match="not a valid range"):
        parse_cpu_list("3-1", "x")
