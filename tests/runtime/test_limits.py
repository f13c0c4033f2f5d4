"""linux.resources on real containers: each limit is measured after the kernel applied it.

These run on whatever cgroup layout the machine has (hybrid here; scripts/vmtest
runs them again on pure v1 and pure v2 kernels).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from minirun import container

BUSY_LOOP = ["/bin/sh", "-c", "while :; do :; done"]


def cpu_usage_ns(state_root: str, cid: str) -> int:
    return container.load(state_root, cid).cgroup().stats()["cpu"]["usage"]["total"]


def measured_share(state_root: str, cid: str, seconds: float = 3.0) -> float:
    """Fraction of one CPU the container's cgroup used over ``seconds`` of wall time."""
    start_usage, start = cpu_usage_ns(state_root, cid), time.monotonic()
    time.sleep(seconds)
    used = cpu_usage_ns(state_root, cid) - start_usage
    return used / ((time.monotonic() - start) * 1e9)


def throttled(state_root: str, cid: str) -> int:
    return container.load(state_root, cid).cgroup().stats()["cpu"]["throttling"][
        "throttled_periods"]


def test_cpu_quota_is_enforced(minirun, make_bundle, state_root):
    limited = make_bundle(args=BUSY_LOOP,
                          **{"linux.resources": {"cpu": {"quota": 10000, "period": 100000}}})
    minirun("run", "-d", "-b", str(limited), "slow")
    try:
        before = throttled(state_root, "slow")
        share = measured_share(state_root, "slow")
        assert 0.08 <= share <= 0.12, f"0.1 CPU asked, {share:.3f} measured"
        assert throttled(state_root, "slow") > before
    finally:
        minirun("delete", "-f", "slow")


def test_no_quota_gets_a_whole_cpu(minirun, make_bundle, state_root):
    minirun("run", "-d", "-b", str(make_bundle(args=BUSY_LOOP)), "fast")
    try:
        assert measured_share(state_root, "fast", 2.0) > 0.6   # a 2-core machine, shared
    finally:
        minirun("delete", "-f", "fast")


def test_update_changes_the_measured_share(minirun, make_bundle, state_root):
    bundle = make_bundle(args=BUSY_LOOP,
                         **{"linux.resources": {"cpu": {"quota": 10000, "period": 100000}}})
    minirun("run", "-d", "-b", str(bundle), "upd")
    try:
        minirun("update", "--cpu-quota", "30000", "upd")
        assert 0.26 <= measured_share(state_root, "upd", 2.0) <= 0.34
        minirun("update", "--cpu-quota", "5000", "upd")
        assert 0.03 <= measured_share(state_root, "upd", 2.0) <= 0.07
    finally:
        minirun("delete", "-f", "upd")


# awk doubles a string until it holds 128 MiB: far beyond the 32 MiB limit
ALLOCATE_128M = ["/bin/sh", "-c",
                 "awk 'BEGIN { s = \"x\"; while (length(s) < 134217728) s = s s; print \"done\" }'"]


def test_memory_limit_oom_kills(minirun, make_bundle, state_root):
    bundle = make_bundle(args=ALLOCATE_128M,
                         **{"linux.resources": {"memory": {"limit": 32 << 20}}})
    result = minirun("run", "-b", str(bundle), "oom", check=False)
    assert result.returncode == 137
    assert "OOM-killed" in result.stderr and "done" not in result.stdout


def test_oom_reason_in_state(minirun, make_bundle, state_root):
    bundle = make_bundle(args=ALLOCATE_128M,
                         **{"linux.resources": {"memory": {"limit": 32 << 20}}})
    minirun("run", "-d", "-b", str(bundle), "oomd")
    deadline = time.monotonic() + 20
    while json.loads(minirun("state", "oomd").stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert json.loads(minirun("state", "oomd").stdout)["reason"] == "OOMKilled"
    minirun("delete", "oomd")


FORK_LOOP = """
import os, time
children = 0
for _ in range(40):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    except BlockingIOError:     # EAGAIN: pids.max reached
        pass
print("forked", children, flush=True)
time.sleep(30)
"""


def test_pids_limit_stops_a_fork_loop(minirun, host_python_bundle, state_root):
    bundle = host_python_bundle(FORK_LOOP, resources={"pids": {"limit": 16}})
    minirun("run", "-d", "-b", str(bundle), "forky")
    try:
        deadline = time.monotonic() + 10
        while len(pids := json.loads(minirun("ps", "--format", "json", "forky").stdout)) < 16:
            assert time.monotonic() < deadline, f"only {len(pids)} processes"
            time.sleep(0.1)
        time.sleep(0.5)          # the loop has had every chance to go past the limit
        assert len(json.loads(minirun("ps", "--format", "json", "forky").stdout)) == 16
    finally:
        minirun("delete", "-f", "forky")


def test_freezer_pause_and_resume(minirun, make_bundle, state_root, tmp_path: Path):
    shared = tmp_path / "counter"
    shared.mkdir()
    mounts = json.loads((Path(__file__).resolve().parents[2] / "bundles" / "busybox" /
                         "config.json").read_text())["mounts"]
    mounts.append({"destination": "/out", "type": "bind", "source": str(shared),
                   "options": ["rbind", "rw"]})
    bundle = make_bundle(args=["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /out/n;"
                               " sleep 0.01; done"], mounts=mounts)
    count = lambda: int((shared / "n").read_text() or 0)   # noqa: E731
    minirun("run", "-d", "-b", str(bundle), "frozen")
    try:
        time.sleep(0.5)
        minirun("pause", "frozen")
        assert json.loads(minirun("state", "frozen").stdout)["status"] == "paused"
        assert "paused" in minirun("list").stdout
        first = count()
        time.sleep(0.5)
        assert count() == first, "the counter advanced while frozen"
        minirun("resume", "frozen")
        assert json.loads(minirun("state", "frozen").stdout)["status"] == "running"
        time.sleep(0.5)
        assert count() > first
    finally:
        minirun("delete", "-f", "frozen")


HUGE_2M = 2 << 20
MAP_ONE_OR_TWO = """
import mmap, sys
MAP_HUGETLB = 0x40000
maps = []
for i in range(int(sys.argv[1])):
    m = mmap.mmap(-1, 2 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB)
    m[0] = 1          # touch it: the page is charged to the cgroup now
    maps.append(m)
print("mapped", len(maps))
"""


@pytest.fixture
def host_python_bundle(make_bundle, tmp_path: Path):
    """A bundle whose rootfs borrows the host's /usr (read-only) to run Debian's python3."""
    rootfs = tmp_path / "pyroot"
    for d in ("usr", "proc", "dev", "tmp"):
        (rootfs / d).mkdir(parents=True)
    for link in ("bin", "lib", "lib64"):
        (rootfs / link).symlink_to(f"usr/{link}")
    mounts = [{"destination": "/usr", "type": "bind", "source": "/usr",
               "options": ["rbind", "ro"]},
              {"destination": "/proc", "type": "proc", "source": "proc"},
              {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "mode=755"]}]

    def make(script: str, *args: str, resources: dict) -> Path:
        return make_bundle(args=["/usr/bin/python3", "-c", script, *args], rootfs=rootfs,
                           mounts=mounts, **{"linux.resources": resources})

    return make


@pytest.fixture
def four_huge_pages():
    """Reserve 4 huge pages of 2 MB for the test; give them back after."""
    path = Path("/proc/sys/vm/nr_hugepages")
    old = path.read_text().strip()
    path.write_text("4")
    if int(path.read_text()) < 4:
        path.write_text(old)
        pytest.skip("the kernel could not reserve 4 huge pages of 2 MB on this machine")
    yield
    path.write_text(old)


def test_hugetlb_limit(minirun, host_python_bundle, state_root, four_huge_pages):
    results = []
    for pages in (1, 2):
        bundle = host_python_bundle(MAP_ONE_OR_TWO, str(pages), resources={
            "hugepageLimits": [{"pageSize": "2MB", "limit": HUGE_2M}]})
        results.append(minirun("run", "-b", str(bundle), f"huge{pages}", check=False))
    one, two = results
    assert one.returncode == 0 and "mapped 1" in one.stdout, one.stderr
    # the second page is over the limit: the kernel answers with SIGBUS on first touch
    assert two.returncode == 128 + 7 and "mapped 2" not in two.stdout, two.stderr


def test_no_cgroup_left_after_a_failed_create(minirun, make_bundle, state_root):
    from tests.conftest import minirun_cgroup_dirs

    before = set(minirun_cgroup_dirs())
    bundle = make_bundle(args=["no-such-program"],
                         **{"linux.resources": {"memory": {"limit": 64 << 20}}})
    assert minirun("create", "-b", str(bundle), "failing", check=False).returncode != 0
    assert set(minirun_cgroup_dirs()) == before


def test_update_rejects_a_memory_limit_below_usage(minirun, make_bundle, state_root):
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/sleep", "30"])), "mem")
    try:
        result = minirun("update", "--memory", "4096", "mem", check=False)
        assert result.returncode != 0 and "memory" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        minirun("delete", "-f", "mem")


def test_update_is_kept_in_the_stored_config(minirun, make_bundle, state_root):
    bundle = make_bundle(args=["/bin/sleep", "30"],
                         **{"linux.resources": {"cpu": {"quota": 10000, "period": 100000}}})
    minirun("run", "-d", "-b", str(bundle), "kept")
    try:
        minirun("update", "--cpu-quota", "20000", "--pids-limit", "50", "kept")
        stored = container.load(state_root, "kept").config().resources
        assert stored.cpu.quota == 20000 and stored.cpu.period == 100000
        assert stored.pids_limit == 50
    finally:
        minirun("delete", "-f", "kept")
