"""pause, resume, update and events through the real command line, on busybox containers
whose cgroups go under this run's own root ($MINIRUN_CGROUP_ROOT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from cgroup_helpers import TEST_ROOT

from minirun.cgroups import Cgroup
from minirun.cgroups.files import read_file

ENV = {**os.environ, "MINIRUN_CGROUP_ROOT": TEST_ROOT}
BUSY = ["/bin/sh", "-c", "while true; do :; done"]


@pytest.fixture
def run(minirun, state_root):
    """``run("pause", "c1")``: the minirun command line with this run's cgroup root;
    whatever containers the test made are deleted at its end, failed or not."""
    def call(*args: str, check: bool = True):
        return minirun(*args, check=check, env=ENV)
    yield call
    for cid in os.listdir(state_root) if os.path.isdir(state_root) else []:
        result = minirun("delete", "-f", cid, check=False, env=ENV)
        assert result.returncode == 0, f"delete -f {cid}: {result.stderr.strip()}"


def status(run, cid: str) -> str:
    return json.loads(run("state", cid).stdout)["status"]


def cpu_used(run, cid: str) -> int:
    result = run("events", "--stats", cid)
    event = json.loads(result.stdout)
    assert event["type"] == "stats" and event["id"] == cid
    return event["data"]["cpu"]["usage"]["total"]


def test_pause_and_resume(run, make_bundle):
    run("run", "-d", "-b", str(make_bundle(args=BUSY)), "c1")
    run("pause", "c1")
    assert status(run, "c1") == "paused"
    assert "paused" in run("list").stdout
    frozen_at = cpu_used(run, "c1")
    time.sleep(0.3)
    assert cpu_used(run, "c1") == frozen_at, "a paused container used CPU"
    again = run("pause", "c1", check=False)
    assert again.returncode == 1 and "is paused: cannot pause it" in again.stderr
    run("resume", "c1")
    assert status(run, "c1") == "running"
    time.sleep(0.3)
    assert cpu_used(run, "c1") > frozen_at


def test_update_flags_and_resources_file(run, make_bundle, tmp_path):
    bundle = make_bundle(args=BUSY, **{"linux.resources": {"cpu": {"quota": 10000}}})
    run("run", "-d", "-b", str(bundle), "c2")
    cg = Cgroup.for_container(None, "c2", root=TEST_ROOT)
    run("update", "--cpu-quota", "30000", "--memory", "256m", "c2")
    stats = json.loads(run("events", "--stats", "c2").stdout)["data"]
    assert stats["memory"]["usage"]["limit"] == 256 << 20
    quota_file = os.path.join(cg.dir_for("cpu"), "cpu.max")
    if os.path.exists(quota_file):
        assert read_file(quota_file).split()[0] == "30000"
    else:
        assert read_file(os.path.join(cg.dir_for("cpu"), "cpu.cfs_quota_us")) == "30000"
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"pids": {"limit": 7}}))
    run("update", "--resources", str(resources), "c2")
    assert json.loads(run("events", "--stats", "c2").stdout)["data"]["pids"]["limit"] == 7
    bad = run("update", "--cpu-quota", "10", "c2", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "minirun: update.cpu.quota: 10 is below 1000 us (1 ms), the smallest quota the kernel "
        "takes; use -1 for no limit"]


def test_events_streams_an_oom_kill_and_the_exit(run, make_bundle, state_root):
    bundle = make_bundle(
        args=["/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 0.2"],
        **{"linux.resources": {"memory": {"limit": 16 << 20}}})
    run("create", "-b", str(bundle), "c3")
    watch = subprocess.Popen([sys.executable, "-m", "minirun", "--root", state_root, "events",
                              "--interval", "0.2", "c3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        first = json.loads(watch.stdout.readline())   # the watcher is up: start the program
        assert first["type"] == "stats", watch.stderr.read()
        run("start", "c3")
        out, err = watch.communicate(timeout=60)
    finally:
        watch.kill()
        watch.wait()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e for e in events if e["type"] != "stats"] == [{"type": "oom", "id": "c3"},
                                                           {"type": "exit", "id": "c3"}], err
