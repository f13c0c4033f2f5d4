"""The kernel enforces what minirun writes: each test puts a real process in a cgroup
made through minirun.cgroups and measures the limit biting (CPU time from the cgroup's
own usage counter, OOM kills, failed forks, huge page faults, a frozen counter)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from cgroup_helpers import PREFIX, cpu_share, spawn

from minirun.cgroups import Cgroup
from minirun.config.resources import parse_resources
from minirun.errors import ConfigError

BUSY_LOOP = "while True: pass"


def assert_share(share, quota: float, tolerance: float, what: str) -> None:
    """The measured share is the quota, within ``tolerance`` CPUs."""
    assert abs(share.used - quota) <= tolerance, \
        f"{what}: ran {share.used:.3f} CPUs (and waited {share.waited:.3f}) for {quota}"


def test_cpu_quota_gives_a_tenth_of_a_cpu(make_cgroup):
    cg = make_cgroup({"cpu": {"quota": 10000, "period": 100000}})
    proc = spawn(cg, BUSY_LOOP)
    time.sleep(0.3)
    share = cpu_share(cg, 3.0, proc.pid)
    assert_share(share, 0.1, 0.02, "a 10000/100000 quota")
    assert share.throttled >= 20, f"only {share.throttled} periods throttled in 3 s"


def test_no_quota_gives_a_whole_cpu(make_cgroup):
    cg = make_cgroup({"cpu": {"quota": -1, "period": 100000}})
    proc = spawn(cg, BUSY_LOOP)
    time.sleep(0.3)
    share = cpu_share(cg, 3.0, proc.pid)
    assert share.throttled == 0
    assert_share(share, 1.0, 0.1, "without a quota")


def test_update_raises_and_lowers_the_quota(make_cgroup):
    cg = make_cgroup({"cpu": {"quota": 10000, "period": 100000}})
    proc = spawn(cg, BUSY_LOOP)
    cg.update(parse_resources({"cpu": {"quota": 50000}}))
    time.sleep(0.3)
    raised = cpu_share(cg, 2.0, proc.pid)
    assert_share(raised, 0.5, 0.05, "after raising the quota to 50%")
    cg.update(parse_resources({"cpu": {"quota": 20000}}))
    time.sleep(0.3)
    lowered = cpu_share(cg, 2.0, proc.pid)
    assert_share(lowered, 0.2, 0.03, "after lowering the quota to 20%")
    assert lowered.throttled > 0


def test_memory_limit_oom_kills_a_bigger_allocation(make_cgroup):
    cg = make_cgroup({"memory": {"limit": 32 << 20}})
    proc = spawn(cg, "data = b'x' * (128 << 20)")
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert cg.oom_kill_count() == 1
    assert cg.stats()["memory"]["oom_kill"] == 1


def test_memory_update_below_usage_is_refused(make_cgroup):
    cg = make_cgroup({"memory": {"limit": 256 << 20}})
    proc = spawn(cg, "data = b'x' * (64 << 20)\nprint('ok', flush=True)\n"
                     "import time\ntime.sleep(60)", stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ok\n"
    with pytest.raises(ConfigError, match=r"^linux\.resources\.memory\.limit: 16777216 bytes is "
                                          r"below what the cgroup already uses \(\d+ bytes\)"):
        cg.update(parse_resources({"memory": {"limit": 16 << 20}}))
    assert proc.poll() is None, "the refused update must not have hurt the process"
    cg.update(parse_resources({"memory": {"limit": 512 << 20}}))
    assert cg.stats()["memory"]["usage"]["limit"] == 512 << 20


FORK_LOOP = """
import os, time
forked = 0
for _ in range(40):
    try:
        pid = os.fork()
    except BlockingIOError:      # EAGAIN: pids.max reached
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forked += 1
print(forked, flush=True)
time.sleep(60)
"""


def test_pids_limit_stops_a_fork_loop_at_16(make_cgroup):
    cg = make_cgroup({"pids": {"limit": 16}})
    proc = spawn(cg, FORK_LOOP, stdout=subprocess.PIPE)
    assert int(proc.stdout.readline()) == 15    # 15 children + the parent = 16
    assert len(cg.pids()) == 16
    assert cg.stats()["pids"] == {"current": 16, "limit": 16}


HUGE_PAGE = 2 << 20
MAP_HUGETLB = 0x40000      # <sys/mman.h>; Python's mmap module does not name it


def touch_huge_pages(pages: int) -> str:
    return f"""
import mmap, sys
try:
    m = mmap.mmap(-1, {pages * HUGE_PAGE},
                  flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | {MAP_HUGETLB})
except OSError as e:
    sys.exit(e.errno)
for i in range({pages}):
    m[i * {HUGE_PAGE}] = 1       # the fault is where the hugetlb cgroup charges
"""


@pytest.fixture
def four_huge_pages():
    """Reserve four 2 MB huge pages for the test and give them back after."""
    with open("/proc/meminfo") as fh:
        if "Hugepagesize:       2048 kB" not in fh.read():
            pytest.skip("the default huge page size is not 2 MB on this machine")
    path = "/proc/sys/vm/nr_hugepages"
    with open(path) as fh:
        old = fh.read().strip()
    try:
        with open(path, "w") as fh:
            fh.write("4")
        with open(path) as fh:
            if int(fh.read()) < 4:
                pytest.skip("the kernel could not allocate 4 huge pages (memory fragmented)")
        yield
    finally:
        with open(path, "w") as fh:
            fh.write(old)


def test_hugetlb_limit_allows_one_page_not_two(four_huge_pages, make_cgroup):
    cg = make_cgroup({"hugepageLimits": [{"pageSize": "2MB", "limit": HUGE_PAGE}]})
    one = spawn(cg, touch_huge_pages(1))
    assert one.wait(timeout=30) == 0, "one 2 MB page within a 2 MB limit must work"
    two = spawn(cg, touch_huge_pages(2))
    code = two.wait(timeout=30)
    assert code in (-signal.SIGBUS, 12), f"the second page got exit status {code}, not " \
        "SIGBUS or ENOMEM"
    assert cg.stats()["hugetlb"]["2MB"]["failcnt"] >= 1


def test_freezer_stops_and_resumes_a_counter(make_cgroup, tmp_path):
    cg = make_cgroup()
    counter = tmp_path / "counter"
    counter.write_text("0")
    spawn(cg, f"""
import os
fd = os.open({str(counter)!r}, os.O_WRONLY)
n = 0
while True:
    n += 1
    if n % 1000 == 0:
        os.pwrite(fd, b"%20d" % n, 0)
""")

    def count() -> int:
        return int(counter.read_text())

    deadline = time.monotonic() + 10
    while count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    cg.freeze()
    assert cg.is_frozen()
    frozen_at = count()
    time.sleep(0.3)
    assert count() == frozen_at, "the counter advanced while frozen"
    cg.thaw()
    assert not cg.is_frozen()
    time.sleep(0.3)
    assert count() > frozen_at, "the counter did not resume after thaw"


def test_kill_all_reaches_every_process_and_destroy_removes_everything(make_cgroup):
    cg = make_cgroup()
    proc = spawn(cg, "import os, time\nfor _ in range(3):\n    if os.fork() == 0: break\n"
                     "os.write(1, b'up\\n')\ntime.sleep(60)", stdout=subprocess.PIPE)
    for _ in range(4):
        assert proc.stdout.readline() == b"up\n"
    assert len(cg.pids()) == 4 and proc.pid in cg.pids()
    cg.kill_all(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    cg.destroy()          # retries while the orphans' exits are still in flight
    assert not any(os.path.exists(d.path) for d in cg.dirs)


def test_failed_create_leaves_no_directory():
    """A value the kernel refuses (or v2 cannot express) undoes every mkdir (this one
    goes under the default root, the shared ``minirun``)."""
    cg = Cgroup.for_container(None, f"{PREFIX}refused")
    # realtime runtime needs the same budget in every ancestor, which minirun's
    # root does not have: cgroup v1 refuses with EINVAL, v2 has no such file
    resources = parse_resources({"cpu": {"realtimePeriod": 1000000,
                                         "realtimeRuntime": 500000}})
    with pytest.raises(ConfigError, match=r"^linux\.resources\.cpu\.realtime"):
        cg.create(resources)
    assert not any(os.path.exists(d.path) for d in cg.dirs)


def test_adding_a_dead_process_names_the_file(make_cgroup):
    cg = make_cgroup()
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(OSError, match=r"write\(.*/cgroup\.procs, '\d+'\): ESRCH"):
        cg.add_process(proc.pid)
