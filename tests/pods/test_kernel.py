"""Real pods on this machine: the kernel's cgroup files and oom_score_adj are the kubelet's.

For one pod of each QoS class this builds the pod cgroup, the pause sandbox and
busybox ``sleep`` containers with minirun.pod (qos, bundle, images) and the real
runtime (minirun.container), then reads back what the kernel holds:
cpu.shares, cpu.cfs_quota_us, cpu.cfs_period_us, memory.limit_in_bytes (and
memsw), hugetlb limits, /proc/PID/oom_score_adj, and the namespaces each
process is in. The expected numbers are worked out in this file from the
kubelet's formulas (helpers_linux.go, policy.go), written out by hand.

Everything made is taken back: containers (deleted and reaped), the pod
cgroups, the pod's tmpfs mounts, and this run's own cgroup root.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from minirun import container
from minirun.cgroups import Cgroup, detect_layout
from minirun.config.pod import parse_pod
from minirun.config.resources import parse_resources
from minirun.pause import native_pause_path, pause_command
from minirun.pod import bundle, images, node, qos

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOT = f"minirun-podtest-{os.getpid()}"   # this run's own root: runs never meet
MI = 1 << 20
PERIOD = 100000
SLEEP = ["sleep", "3600"]


# --- the kubelet's formulas, written out again ------------------------------------------

def shares(milli: int) -> int:
    """MilliCPUToShares: 1024 per CPU, truncated; 2 when nothing is requested."""
    return 2 if milli == 0 else max(2, milli * 1024 // 1000)


def quota(milli: int) -> int:
    """MilliCPUToQuota: the limit's share of a 100 ms period, at least 1 ms."""
    return max(1000, milli * PERIOD // 1000)


def mem_total() -> int:
    with open("/proc/meminfo") as fh:
        return int(next(line for line in fh if line.startswith("MemTotal:")).split()[1]) * 1024


def burstable_oom(memory_request: int) -> int:
    """GetContainerOOMScoreAdjust for Burstable, with its clamps to 3..999."""
    value = 1000 - (1000 * memory_request) // mem_total()
    return 3 if value < 3 else 999 if value == 1000 else value


def can_lower_oom_score_adj() -> bool:
    with open("/proc/self/status") as fh:
        eff = int(next(line for line in fh if line.startswith("CapEff:")).split()[1], 16)
    return bool(eff & (1 << 24))                    # CAP_SYS_RESOURCE


def applicable(value: int) -> int:
    """What the kernel lets this process set: without CAP_SYS_RESOURCE nothing below
    its own oom_score_adj (proc(5)), which is what restrict_oom_score_adj passes on."""
    if can_lower_oom_score_adj():
        return value
    with open("/proc/self/oom_score_adj") as fh:
        return max(value, int(fh.read()))


# --- reading the kernel's files ---------------------------------------------------------------

def role_dir(cg: Cgroup, role: str) -> tuple[int, str]:
    d = next(d for d in cg.dirs if role in d.roles)
    return d.version, d.path


def read(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


@dataclass
class Seen:
    """A cgroup's values as the kernel holds them; None means "no limit"."""
    shares: int                   # v1 cpu.shares; on v2 the cpu.weight minirun wrote
    quota: int | None
    period: int
    memory: int | None
    memsw: int | None = None
    hugetlb: dict[str, int | None] = field(default_factory=dict)


def seen(cg: Cgroup) -> Seen:
    version, cpu = role_dir(cg, "cpu")
    if version == 1:
        cpu_shares = int(read(f"{cpu}/cpu.shares"))
        q, p = int(read(f"{cpu}/cpu.cfs_quota_us")), int(read(f"{cpu}/cpu.cfs_period_us"))
    else:
        cpu_shares = int(read(f"{cpu}/cpu.weight"))
        text_quota, text_period = read(f"{cpu}/cpu.max").split()
        q, p = (-1 if text_quota == "max" else int(text_quota)), int(text_period)
    version, mem = role_dir(cg, "memory")
    if version == 1:
        limit = int(read(f"{mem}/memory.limit_in_bytes"))
        swap_file = f"{mem}/memory.memsw.limit_in_bytes"
        memsw = int(read(swap_file)) if os.path.exists(swap_file) else None
        unlimited = 1 << 62                     # the kernel shows "none" as ~2**63
        out = Seen(cpu_shares, None if q == -1 else q, p, None if limit >= unlimited else limit,
                   None if memsw is None or memsw >= unlimited else memsw)
    else:
        text = read(f"{mem}/memory.max")
        out = Seen(cpu_shares, None if q == -1 else q, p, None if text == "max" else int(text))
    if any("hugetlb" in d.roles for d in cg.dirs):
        version, huge = role_dir(cg, "hugetlb")
        for size in page_sizes():
            name = f"hugetlb.{size}.max" if version == 2 else f"hugetlb.{size}.limit_in_bytes"
            text = read(f"{huge}/{name}")
            out.hugetlb[size] = None if text == "max" or int(text) >= 1 << 62 else int(text)
    return out


def page_sizes() -> list[str]:
    """The huge page sizes of this kernel in the kernel's spelling: 2MB, 1GB."""
    names = []
    for entry in sorted(os.listdir("/sys/kernel/mm/hugepages")):
        kib = int(entry.removeprefix("hugepages-").removesuffix("kB"))
        names.append(f"{kib // 1024}MB" if kib < 1 << 20 else f"{kib >> 20}GB")
    return names


def expected_cpu(cg_shares: int) -> int:
    """cpu.shares on v1; on v2 the weight minirun.cgroups converts shares to."""
    version, _ = role_dir(Cgroup.for_container("x", "x", CGROUP_ROOT), "cpu")
    if version == 1:
        return cg_shares
    from minirun.cgroups.v2 import shares_to_weight
    return shares_to_weight(cg_shares)


# --- running a pod with the runtime ----------------------------------------------------------

@dataclass
class RunningPod:
    pod: object
    cgroup: Cgroup
    sandbox: container.Container
    apps: dict[str, container.Container]


@pytest.fixture(scope="module", autouse=True)
def own_cgroup_root():
    """This run's cgroup root goes at the end; so do the v2 controllers it enabled."""
    v2 = next((h for h in detect_layout().hierarchies if h.version == 2), None)
    control = os.path.join(v2.own_dir, "cgroup.subtree_control") if v2 else None
    enabled_before = set(read(control).split()) if control else set()
    yield
    left = []
    for h in detect_layout().managed():
        root = os.path.join(h.own_dir, CGROUP_ROOT)
        if os.path.isdir(root):
            left += [os.path.join(base, d) for base, dirs, _ in os.walk(root) for d in dirs]
            for base, _, _ in sorted(os.walk(root), key=lambda w: -len(w[0])):
                os.rmdir(base)
    if control:
        for name in set(read(control).split()) - enabled_before:
            try:
                with open(control, "w") as fh:
                    fh.write(f"-{name}")
            except OSError:
                pass              # another run uses it: best effort, as tests/cgroups does
    assert not left, f"pod cgroups left behind: {left}"


@pytest.fixture
def run_pod(state_root, tmp_path):
    """``run_pod(manifest)``: the pod cgroup, its sandbox, and every app container
    started; all of it stopped and removed at the end of the test."""
    if not (REPO / "bundles/busybox/rootfs/bin/busybox").exists():
        pytest.fail("bundles/busybox/rootfs is missing: run scripts/build-bundles busybox")
    if native_pause_path() is None:
        pytest.fail("the native pause holder is not built: reinstall minirun (pip install -e .)")
    started: list[RunningPod] = []
    undo: list = []

    def run(manifest: dict) -> RunningPod:
        pod = parse_pod(manifest)
        volumes = str(tmp_path / f"volumes-{pod.name}")
        pod_cgroup = Cgroup.for_container(qos.pod_cgroup_path(pod), pod.name, CGROUP_ROOT)
        pod_cgroup.create(parse_resources(qos.pod_resources(pod)))
        undo.append(pod_cgroup.destroy)
        bundle.prepare_volumes(pod, volumes)
        undo.append(lambda: bundle.remove_volumes(pod, volumes))
        sandbox_cfg = bundle.sandbox_config(
            pod, cgroups_path=qos.sandbox_cgroup_path(pod), resources=qos.sandbox_resources(),
            pause_args=pause_command(), volumes_dir=volumes,
            rootfs=bundle.make_pause_rootfs(str(tmp_path / "pause-rootfs")),
            oom_score_adj=qos.restrict_oom_score_adj(qos.SANDBOX_OOM_SCORE_ADJ))
        sandbox = _start(state_root, f"{pod.name}-pause", sandbox_cfg, tmp_path, undo)
        apps = {}
        for c in pod.containers:
            cfg = bundle.container_config(
                pod, c, images.resolve_image(c.image), sandbox_pid=sandbox.record.pid,
                cgroups_path=qos.container_cgroup_path(pod, c.name),
                resources=qos.container_resources(pod, c),
                oom_score_adj=qos.restrict_oom_score_adj(
                    qos.oom_score_adj(pod, c, node.memory_capacity())),
                volumes_dir=volumes)
            apps[c.name] = _start(state_root, f"{pod.name}-{c.name}", cfg, tmp_path, undo)
        running = RunningPod(pod, pod_cgroup, sandbox, apps)
        started.append(running)
        return running

    yield run
    # newest first: app containers, then the pause (with a shared PID namespace the
    # pause cannot finish exiting while a dead app container is left unreaped)
    problems = []
    for step in reversed(undo):
        try:
            step()
        except Exception as e:    # noqa: BLE001 - keep cleaning, report at the end
            problems.append(str(e))
    assert not problems, problems


def _start(state_root: str, cid: str, config: dict, tmp_path: Path, undo: list):
    directory = bundle.write_bundle(str(tmp_path / "bundles" / cid), config)
    created = container.create(state_root, cid, directory, cgroup_root=CGROUP_ROOT)
    undo.append(lambda: _delete(state_root, cid, created.record.pid))
    container.start(state_root, cid)
    # start() lets the init go on; capabilities and the user are set just before its
    # execve, so wait for the program to be the one running
    program = os.path.basename(config["process"]["args"][0])[:15]
    deadline = time.monotonic() + 5
    while read(f"/proc/{created.record.pid}/comm") != program:
        assert time.monotonic() < deadline, f"{cid} never ran {program}"
        time.sleep(0.002)
    return created


def _delete(state_root: str, cid: str, pid: int) -> None:
    container.delete(state_root, cid, force=True)
    try:
        os.waitpid(pid, 0)            # the init is this process's child: reap it
    except ChildProcessError:
        pass


def pod_manifest(name: str, containers: list[dict], init: list[dict] | None = None,
                 **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, "initContainers": init or [], **spec}}


def sleeper(name: str, requests: dict | None = None, limits: dict | None = None) -> dict:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"name": name, "image": "busybox", "command": SLEEP, "resources": resources}


def ns_pids(pid: int) -> list[int]:
    """NSpid of /proc/PID/status: the PID in each PID namespace, the process's own last."""
    line = next(line for line in read(f"/proc/{pid}/status").splitlines()
                if line.startswith("NSpid:"))
    return [int(n) for n in line.split()[1:]]


def oom_score_adj(pid: int) -> int:
    return int(read(f"/proc/{pid}/oom_score_adj"))


def assert_in_cgroup(pid: int, cg: Cgroup) -> None:
    for d in cg.dirs:
        assert pid in [int(p) for p in read(f"{d.path}/cgroup.procs").split()], d.path


def assert_shares_namespaces(app_pid: int, pause_pid: int, pid_shared: bool) -> None:
    for ns in ("net", "ipc", "uts"):
        assert os.readlink(f"/proc/{app_pid}/ns/{ns}") == os.readlink(f"/proc/{pause_pid}/ns/{ns}")
    same_pid = os.readlink(f"/proc/{app_pid}/ns/pid") == os.readlink(f"/proc/{pause_pid}/ns/pid")
    assert same_pid == pid_shared
    assert os.readlink(f"/proc/{app_pid}/ns/mnt") != os.readlink(f"/proc/{pause_pid}/ns/mnt")


def hugetlb_expected(requested: dict[str, int]) -> dict[str, int]:
    return {size: requested.get(size, 0) for size in page_sizes()}


def container_cgroup(state_root: str, c: container.Container) -> Cgroup:
    return container.load(state_root, c.record.id).cgroup()


# --- the three QoS classes ------------------------------------------------------------------------

def test_guaranteed_pod(run_pod, state_root):
    running = run_pod(pod_manifest("steady", [
        sleeper("main", limits={"cpu": "500m", "memory": "64Mi", "hugepages-2Mi": "4Mi"}),
        sleeper("helper", limits={"cpu": "250m", "memory": "32Mi"})]))
    assert qos.qos_class(running.pod) == "Guaranteed"
    assert qos.pod_cgroup_path(running.pod).startswith("kubepods/pod")
    has_hugetlb = any("hugetlb" in d.roles for d in running.cgroup.dirs)

    # the pod cgroup: the sum of its containers (750m, 96Mi), huge pages 4Mi of 2MB
    pod = seen(running.cgroup)
    assert (pod.shares, pod.quota, pod.period, pod.memory) == \
        (expected_cpu(shares(750)), quota(750), PERIOD, 96 * MI)
    if has_hugetlb:
        assert pod.hugetlb == hugetlb_expected({"2MB": 4 * MI})

    for name, milli, memory, huge in (("main", 500, 64 * MI, 4 * MI), ("helper", 250, 32 * MI, 0)):
        app = running.apps[name]
        got = seen(container_cgroup(state_root, app))
        assert (got.shares, got.quota, got.period, got.memory) == \
            (expected_cpu(shares(milli)), quota(milli), PERIOD, memory), name
        if got.memsw is not None:
            assert got.memsw == memory, "NoSwap: memory+swap equals the memory limit"
        if has_hugetlb:
            assert got.hugetlb == hugetlb_expected({"2MB": huge} if huge else {})
        assert oom_score_adj(app.record.pid) == applicable(-997)
        assert_in_cgroup(app.record.pid, container_cgroup(state_root, app))
        assert_shares_namespaces(app.record.pid, running.sandbox.record.pid, pid_shared=False)
    assert oom_score_adj(running.sandbox.record.pid) == applicable(-998)
    assert_in_cgroup(running.sandbox.record.pid, container_cgroup(state_root, running.sandbox))


def test_burstable_pod_with_an_init_container(run_pod, state_root):
    running = run_pod(pod_manifest(
        "bursty",
        [sleeper("main", requests={"cpu": "250m", "memory": "64Mi"}, limits={"memory": "128Mi"})],
        init=[sleeper("setup", requests={"cpu": "1"}, limits={"cpu": "1", "memory": "200Mi"})],
        shareProcessNamespace=True))
    assert qos.qos_class(running.pod) == "Burstable"
    assert qos.pod_cgroup_path(running.pod).startswith("kubepods/burstable/pod")

    # pod: cpu request max(250m, 1000m of the init container); main has no cpu limit, so
    # no quota; both have memory limits, so the memory limit is max(128Mi, 200Mi)
    pod = seen(running.cgroup)
    assert (pod.shares, pod.quota, pod.memory) == (expected_cpu(shares(1000)), None, 200 * MI)

    main = running.apps["main"]
    got = seen(container_cgroup(state_root, main))
    assert (got.shares, got.quota, got.period, got.memory) == \
        (expected_cpu(shares(250)), None, PERIOD, 128 * MI)
    if got.memsw is not None:
        assert got.memsw == 128 * MI
    assert oom_score_adj(main.record.pid) == applicable(burstable_oom(64 * MI))
    # shareProcessNamespace: one PID namespace, where the pause is PID 1
    assert_shares_namespaces(main.record.pid, running.sandbox.record.pid, pid_shared=True)
    assert ns_pids(running.sandbox.record.pid)[-1] == 1


def test_best_effort_pod(run_pod, state_root):
    running = run_pod(pod_manifest("idle", [sleeper("main")]))
    assert qos.qos_class(running.pod) == "BestEffort"
    assert qos.pod_cgroup_path(running.pod).startswith("kubepods/besteffort/pod")
    pod = seen(running.cgroup)
    assert (pod.shares, pod.quota, pod.memory) == (expected_cpu(2), None, None)
    if any("hugetlb" in d.roles for d in running.cgroup.dirs):
        assert pod.hugetlb == hugetlb_expected({})
    main = running.apps["main"]
    got = seen(container_cgroup(state_root, main))
    assert (got.shares, got.quota, got.period, got.memory) == (expected_cpu(2), None, PERIOD,
                                                               None)
    assert oom_score_adj(main.record.pid) == 1000
    assert_shares_namespaces(main.record.pid, running.sandbox.record.pid, pid_shared=False)


@pytest.mark.skipif(not can_lower_oom_score_adj(),
                    reason="this machine withholds CAP_SYS_RESOURCE (CapEff bit 24 is clear), "
                           "so no process here may set a negative oom_score_adj; the other "
                           "tests check the clamped values the kernel does accept")
def test_negative_oom_score_adj_exactly(run_pod):
    running = run_pod(pod_manifest("steady", [
        sleeper("main", limits={"cpu": "100m", "memory": "16Mi"})]))
    assert oom_score_adj(running.apps["main"].record.pid) == -997
    assert oom_score_adj(running.sandbox.record.pid) == -998


def test_killing_the_pause_ends_a_shared_pid_namespace(run_pod):
    """With one PID namespace, the pause is its init: SIGKILL to it kills every
    container process in the pod (pid_namespaces(7))."""
    running = run_pod(pod_manifest("fragile", [sleeper("main")], shareProcessNamespace=True))
    main, pause = running.apps["main"].record.pid, running.sandbox.record.pid
    os.kill(pause, signal.SIGKILL)
    os.waitpid(main, 0)                 # main dies with its namespace; reap it
    os.waitpid(pause, 0)
    assert not os.path.exists(f"/proc/{main}") and not os.path.exists(f"/proc/{pause}")



def test_privileged_container_gets_what_the_runtime_holds(run_pod):
    """Privileged means every capability this process has, which on a machine that
    withholds some (CAP_SYS_RESOURCE here) is not every one the kernel knows."""
    running = run_pod(pod_manifest("root", [
        {**sleeper("main"), "securityContext": {"privileged": True}},
        {**sleeper("plain"), "securityContext": {"capabilities": {"drop": ["ALL"],
                                                                  "add": ["NET_ADMIN"]}}}]))

    def effective(pid: int | str) -> int:
        line = next(line for line in read(f"/proc/{pid}/status").splitlines()
                    if line.startswith("CapEff:"))
        return int(line.split()[1], 16)

    assert effective(running.apps["main"].record.pid) == effective("self")
    assert effective(running.apps["plain"].record.pid) == 1 << 12      # CAP_NET_ADMIN
