"""Layout detection, placement and the files written, on fake pure-v1 and pure-v2 trees
(this machine is hybrid; the real-kernel tests cover that case and scripts/vmtest the
other two)."""

from __future__ import annotations

import os

import pytest
from fake_cgroupfs import FakeCgroupfs

from minirun.cgroups import Cgroup, detect_layout
from minirun.cgroups.v2 import shares_to_weight
from minirun.config.resources import parse_resources
from minirun.errors import ConfigError, MinirunError

LIMITS = {"cpu": {"shares": 1024, "quota": 20000, "period": 50000, "cpus": "0-1", "mems": "0"},
          "memory": {"limit": 64 << 20, "reservation": 32 << 20},
          "pids": {"limit": -1},
          "blockIO": {"weight": 500},
          "devices": [{"allow": False, "access": "rwm"}]}


@pytest.fixture(autouse=True)
def default_cgroup_root(monkeypatch):
    """These fake trees expect the default root "minirun"; the test run sets its own."""
    monkeypatch.delenv("MINIRUN_CGROUP_ROOT", raising=False)


@pytest.fixture
def fake_v1(tmp_path, monkeypatch) -> FakeCgroupfs:
    fs = FakeCgroupfs(tmp_path, "v1")
    fs.install(monkeypatch)
    return fs


@pytest.fixture
def fake_v2(tmp_path, monkeypatch) -> FakeCgroupfs:
    fs = FakeCgroupfs(tmp_path, "v2")
    fs.install(monkeypatch)
    return fs


def container(fs: FakeCgroupfs, cgroups_path: str | None = None, root: str | None = None,
              cid: str = "c1") -> Cgroup:
    return Cgroup.for_container(cgroups_path, cid, root=root, layout=detect_layout(str(fs.root)))


def dirs_of(cg: Cgroup, fs: FakeCgroupfs) -> dict[str, str]:
    return {",".join(d.roles): os.path.relpath(d.path, fs.root) for d in cg.dirs}


# --- detection ------------------------------------------------------------------------

def test_v1_layout(fake_v1):
    layout = detect_layout(str(fake_v1.root))
    assert layout.kind == "v1"
    cpu = layout.for_role("cpu")
    assert cpu is layout.for_role("cpuacct"), "co-mounted cpu,cpuacct is one hierarchy"
    assert cpu.options == ("cpu", "cpuacct")
    assert cpu.own_dir == str(fake_v1.own("cpu,cpuacct"))
    assert layout.for_role("hugetlb").mountpoint.endswith("/sys/fs/cgroup/hugetlb")
    systemd = next(h for h in layout.hierarchies if h.options == ("name=systemd",))
    assert systemd.roles == () and systemd not in layout.managed()


def test_v2_layout(fake_v2):
    layout = detect_layout(str(fake_v2.root))
    assert layout.kind == "v2"
    assert len(layout.hierarchies) == 1
    assert set(layout.hierarchies[0].roles) == {"cpu", "cpuset", "memory", "pids", "hugetlb",
                                                "blkio", "cpuacct", "freezer", "devices"}


def test_hybrid_layout_chooses_per_controller(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "33 31 0:30 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n")
    (tmp_path / "proc/self/cgroup").write_text("4:memory:/tool/abc\n3:freezer:/\n0::/\n")
    unified = tmp_path / "sys/fs/cgroup/unified"
    unified.mkdir(parents=True)
    (unified / "cgroup.controllers").write_text("hugetlb pids\n")
    layout = detect_layout(str(tmp_path))
    assert layout.kind == "hybrid"
    assert layout.for_role("memory").version == 1
    assert layout.for_role("freezer").version == 1, "v1 freezer wins over cgroup.freeze"
    assert layout.for_role("hugetlb").version == 2
    assert layout.for_role("pids").version == 2
    assert layout.for_role("cpu") is None
    assert layout.for_role("memory").own_dir == str(tmp_path / "sys/fs/cgroup/memory/tool/abc")


def test_mount_root_is_taken_off_the_own_cgroup(tmp_path):
    """In a container the mount shows a subtree (mountinfo field 4), and
    /proc/self/cgroup may name a cgroup outside it."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "32 31 0:29 /docker/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "33 31 0:30 /docker/x /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    (tmp_path / "proc/self/cgroup").write_text("2:memory:/docker/x/inner\n1:pids:/elsewhere\n")
    layout = detect_layout(str(tmp_path))
    assert layout.for_role("memory").own_dir == str(tmp_path / "sys/fs/cgroup/memory/inner")
    assert layout.for_role("pids").own_dir == str(tmp_path / "sys/fs/cgroup/pids")


def test_no_cgroup_mount_is_a_clear_error(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("20 1 0:20 / /sys rw - sysfs sysfs rw\n")
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    with pytest.raises(MinirunError, match="no cgroup filesystem is mounted"):
        detect_layout(str(tmp_path))


# --- placement ------------------------------------------------------------------------

def test_placement_relative_absolute_and_default(fake_v1):
    default = dirs_of(container(fake_v1), fake_v1)
    assert default["memory"] == "sys/fs/cgroup/memory/lab/minirun/c1"
    assert default["cpu,cpuacct"] == "sys/fs/cgroup/cpu,cpuacct/lab/minirun/c1"
    relative = dirs_of(container(fake_v1, "pod1/c1"), fake_v1)
    assert relative["pids"] == "sys/fs/cgroup/pids/lab/minirun/pod1/c1"
    absolute = dirs_of(container(fake_v1, "/abs/c1"), fake_v1)
    assert absolute["pids"] == "sys/fs/cgroup/pids/abs/c1"
    rooted = dirs_of(container(fake_v1, root="/labs"), fake_v1)
    assert rooted["freezer"] == "sys/fs/cgroup/freezer/labs/c1"


@pytest.mark.parametrize("path", ["../escape", "a/../../b", "."])
def test_placement_refuses_paths_outside_the_root(fake_v1, path):
    with pytest.raises(ConfigError, match=r"^linux\.cgroupsPath: "):
        container(fake_v1, path)


# --- pure v1 --------------------------------------------------------------------------

def test_v1_create_writes_each_file(fake_v1):
    cg = container(fake_v1, "pod1/c1")
    cg.create(parse_resources(LIMITS))
    for d in cg.dirs:
        assert os.path.isdir(d.path)
    cpuset = cg.dir_for("cpuset")
    # a new v1 cpuset is empty: the parent's values were copied into each new level
    assert fake_v1.written("minirun/cpuset.cpus") == ["0-3"]
    assert fake_v1.written("pod1/c1/cpuset.cpus") == ["0-3", "0-1"]
    assert open(os.path.join(cpuset, "cpuset.mems")).read() == "0\n"
    order = [os.path.basename(path) for path, _ in fake_v1.writes if "/cpu,cpuacct/" in path]
    assert order == ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"]
    assert fake_v1.written("cpu.cfs_quota_us") == ["20000"]
    assert fake_v1.written("memory.limit_in_bytes") == [str(64 << 20)]
    assert fake_v1.written("memory.soft_limit_in_bytes") == [str(32 << 20)]
    assert fake_v1.written("pids.max") == ["max"]
    assert fake_v1.written("blkio.weight") == ["500"]
    assert fake_v1.written("devices.deny") == ["a *:* rwm"]
    assert "c 1:3 rwm" in fake_v1.written("devices.allow"), "runc's default devices follow"
    memory = cg.to_dict()["dirs"][2]
    assert memory["roles"] == ["memory"]
    assert [os.path.relpath(p, memory["keep"]) for p in memory["created"]] == ["pod1", "pod1/c1"]


def test_v1_swap_without_memsw_is_refused_by_name_and_undone(fake_v1):
    cg = container(fake_v1)
    with pytest.raises(ConfigError, match=r"^linux\.resources\.memory\.swap: memory\.memsw\."
                                          r"limit_in_bytes does not exist"):
        cg.create(parse_resources({"memory": {"limit": 1 << 20, "swap": 2 << 20}}))
    assert not any(os.path.exists(d.path) for d in cg.dirs)
    assert all(os.path.isdir(d.keep) for d in cg.dirs), "the minirun root may stay"


def test_v1_unified_is_refused(fake_v1):
    with pytest.raises(ConfigError, match=r"^linux\.resources\.unified\.memory\.high: "):
        container(fake_v1).create(parse_resources({"unified": {"memory.high": "1G"}}))


def test_v1_freezer_and_state_round_trip(fake_v1):
    cg = container(fake_v1)
    cg.create(None)
    again = Cgroup.from_dict(cg.to_dict())
    again.freeze()
    assert cg.is_frozen()
    again.thaw()
    assert not cg.is_frozen()
    again.destroy()
    assert not any(os.path.exists(d.path) for d in cg.dirs)


# --- pure v2 --------------------------------------------------------------------------

def test_v2_create_enables_controllers_along_the_path(fake_v2):
    cg = container(fake_v2, "pod1/c1")
    cg.create(parse_resources({**LIMITS, "memory": {"limit": 64 << 20, "swap": 96 << 20,
                                                    "reservation": 32 << 20},
                               "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
                               "unified": {"memory.high": "50M"}}))
    [d] = cg.dirs
    assert os.path.relpath(d.path, fake_v2.root) == "sys/fs/cgroup/lab/minirun/pod1/c1"
    controls = [path for path, _ in fake_v2.writes if path.endswith("subtree_control")]
    assert controls == ["sys/fs/cgroup/lab/cgroup.subtree_control",
                        "sys/fs/cgroup/lab/minirun/cgroup.subtree_control",
                        "sys/fs/cgroup/lab/minirun/pod1/cgroup.subtree_control"]
    assert fake_v2.written("lab/cgroup.subtree_control") == ["+cpu +cpuset +hugetlb +io "
                                                             "+memory +pids"]
    assert fake_v2.written("cpu.weight") == ["100"]       # shares 1024 -> weight 100
    assert fake_v2.written("cpu.max") == ["20000 50000"]
    assert fake_v2.written("memory.max") == [str(64 << 20)]
    assert fake_v2.written("memory.swap.max") == [str(32 << 20)]   # swap - limit
    assert fake_v2.written("memory.low") == [str(32 << 20)]
    assert fake_v2.written("pids.max") == ["max"]
    assert fake_v2.written("io.weight") == ["default 4950"]   # 1 + (500-10)*9999/990
    assert fake_v2.written("hugetlb.2MB.max") == [str(4 << 20)]
    assert fake_v2.written("memory.high") == ["50M"]
    assert fake_v2.written("cgroup.procs") == []


def test_v2_update_of_the_period_keeps_the_quota(fake_v2):
    cg = container(fake_v2)
    cg.create(parse_resources({"cpu": {"quota": 20000}}))
    cg.update(parse_resources({"cpu": {"period": 50000}}))
    assert fake_v2.written("cpu.max") == ["20000", "20000 50000"]
    cg.update(parse_resources({"cpu": {"quota": -1}}))
    assert fake_v2.written("cpu.max")[-1] == "max"


@pytest.mark.parametrize(("resources", "field"), [
    ({"devices": [{"allow": False, "access": "rwm"},
                  {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]},
     "devices[1]"),
    ({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]},
     "devices[0]"),
    ({"cpu": {"realtimeRuntime": 1000}}, "cpu.realtimeRuntime"),
    ({"memory": {"swappiness": 10}}, "memory.swappiness"),
    ({"memory": {"disableOOMKiller": True}}, "memory.disableOOMKiller"),
])
def test_v2_refuses_what_it_cannot_express_before_making_anything(fake_v2, resources, field):
    cg = container(fake_v2)
    with pytest.raises(ConfigError, match=rf"^linux\.resources\.{field.replace('[', '.')}"):
        cg.create(parse_resources(resources))
    assert fake_v2.writes == [] and not os.path.exists(cg.dirs[0].path)


def test_v2_accepts_the_default_device_rules(fake_v2):
    default = [{"allow": False, "access": "rwm"},
               {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
               {"allow": True, "type": "c", "major": 136, "minor": -1, "access": "rwm"}]
    container(fake_v2).create(parse_resources({"devices": default}))


def test_v2_swap_needs_a_memory_limit(fake_v2):
    cg = container(fake_v2)
    with pytest.raises(ConfigError, match=r"^linux\.resources\.memory\.swap: .*needs a memory "
                                          r"limit"):
        cg.create(parse_resources({"memory": {"swap": 1 << 30}}))
    assert not os.path.exists(cg.dirs[0].path)


def test_v2_no_internal_processes(fake_v2):
    """The own cgroup holds processes, so it cannot hand controllers to children."""
    (fake_v2.own() / "cgroup.procs").write_text("4242\n")
    cg = container(fake_v2)
    with pytest.raises(MinirunError, match=r"has processes of its own.*no-internal-processes"):
        cg.create(None)
    assert not os.path.exists(cg.dirs[0].path)
    # an absolute root does not go through the own cgroup
    elsewhere = container(fake_v2, root="/labs")
    elsewhere.create(parse_resources({"pids": {"limit": 5}}))
    assert fake_v2.written("labs/c1/pids.max") == ["5"]


def test_v2_freezer_and_kill(fake_v2):
    cg = container(fake_v2)
    cg.create(None)
    cg.freeze()
    assert cg.is_frozen() and fake_v2.written("cgroup.freeze") == ["1"]
    cg.thaw()
    assert not cg.is_frozen()
    cg.kill_all(9)
    assert fake_v2.written("cgroup.kill") == ["1"]
    cg.destroy()
    assert not os.path.exists(cg.dirs[0].path)
    assert os.path.isdir(cg.dirs[0].keep)


def test_destroy_removes_only_the_parents_it_made_and_only_when_empty(fake_v2):
    first, second = container(fake_v2, "pod/a", cid="a"), container(fake_v2, "pod/b", cid="b")
    first.create(None)      # makes pod/ and pod/a
    second.create(None)     # makes pod/b only
    pod = os.path.dirname(first.dirs[0].path)
    first.destroy()
    assert os.path.isdir(pod) and os.path.isdir(second.dirs[0].path), "b still uses pod/"
    second.destroy()
    assert os.path.isdir(pod), "pod/ was not second's to remove"
    third = container(fake_v2, "pod/c", cid="c")
    third.create(None)
    fourth = container(fake_v2, "other/d", cid="d")
    fourth.create(None)
    fourth.destroy()
    assert not os.path.exists(os.path.dirname(fourth.dirs[0].path)), "other/ was fourth's"
    third.destroy()


def test_an_existing_cgroup_with_processes_is_not_shared(fake_v2):
    first = container(fake_v2)
    first.create(None)
    first.add_process(4242)
    second = container(fake_v2)
    with pytest.raises(MinirunError, match=r"is not empty: processes \[4242\]"):
        second.create(None)
    assert os.path.isdir(first.dirs[0].path), "the first container's cgroup is untouched"
    (fake_v2.root / first.dirs[0].path / "cgroup.procs").write_text("")
    second.create(None)       # an empty leftover (a crash before delete) is reused


def test_shares_to_weight_keeps_min_default_and_max():
    assert [shares_to_weight(s) for s in (2, 1024, 262144)] == [1, 100, 10000]
    weights = [shares_to_weight(s) for s in range(2, 262145, 997)]
    assert weights == sorted(weights)
