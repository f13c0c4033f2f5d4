"""Shared fixtures: a private state root, bundles made from the busybox rootfs,
a ``minirun`` runner, and a check at the end that nothing was left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUSYBOX_ROOTFS = REPO / "bundles" / "busybox" / "rootfs"
BUSYBOX_CONFIG = REPO / "bundles" / "busybox" / "config.json"


# Every container this run makes goes under a cgroup root of its own, so that two
# runs on one machine never share (and never kill) each other's cgroups.
CGROUP_ROOT = f"minirun-test-{os.getpid()}"


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError("minirun's tests make namespaces, mounts and cgroups: run as root")
    os.environ["MINIRUN_CGROUP_ROOT"] = CGROUP_ROOT


@pytest.fixture
def state_root(tmp_path: Path) -> str:
    """A --root of the test's own; whatever a test leaves in it fails the test."""
    root = tmp_path / "state"
    yield str(root)
    left = [p.name for p in root.iterdir() if not p.name.startswith(".")] if root.exists() else []
    errors = [subprocess.run([sys.executable, "-m", "minirun", "--root", str(root), "delete",
                              "-f", cid], capture_output=True, text=True).stderr.strip()
              for cid in left]
    assert not left, f"containers left in the state root: {left} (delete -f said: {errors})"


def need_busybox() -> None:
    if not (BUSYBOX_ROOTFS / "bin" / "busybox").exists():
        pytest.fail("bundles/busybox/rootfs is missing: run scripts/build-bundles busybox")


@pytest.fixture
def make_bundle(tmp_path: Path):
    """Write a bundle whose config.json is busybox's with changes applied.

    ``make_bundle(args=[...], **{"process.user.uid": 1000})``: dotted keys set
    nested fields; a value of ``DELETE`` removes the field. The rootfs is the
    shared busybox tree (read-only for the container) unless ``rootfs`` is given.
    """
    need_busybox()
    counter = iter(range(1000))

    def make(args: list[str] | None = None, rootfs: Path | None = None, **changes) -> Path:
        config = json.loads(BUSYBOX_CONFIG.read_text())
        config["root"] = {"path": str(rootfs or BUSYBOX_ROOTFS), "readonly": True}
        if args is not None:
            config["process"]["args"] = args
        for dotted, value in changes.items():
            set_field(config, dotted, value)
        bundle = tmp_path / f"bundle{next(counter)}"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    return make


DELETE = object()


def set_field(obj: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        obj = obj.setdefault(key, {})
    if value is DELETE:
        obj.pop(last, None)
    else:
        obj[last] = value


@pytest.fixture
def copy_rootfs(tmp_path: Path):
    """A private copy of the busybox rootfs, for tests that change files in it."""
    need_busybox()

    def copy() -> Path:
        target = tmp_path / "rootfs-copy"
        shutil.copytree(BUSYBOX_ROOTFS, target, symlinks=True)
        return target

    return copy


@pytest.fixture
def minirun(state_root: str):
    """Run the real ``minirun`` command line against the test's state root."""

    def run(*args: str, check: bool = True, timeout: float = 60, **kwargs):
        cmd = [sys.executable, "-m", "minirun", "--root", state_root, *args]
        # files, not pipes: a detached container inherits minirun's stdout and stderr
        # and keeps them open long after minirun itself has exited
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(cmd, stdout=out, stderr=err, text=True, timeout=timeout,
                                  **kwargs).returncode
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(cmd, code, out.read(), err.read())
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.strip()}")
        return result

    return run


@pytest.fixture
def sandbox():
    """Put the test in a fresh network namespace with lo up; yield its /proc path.

    unshare(2) with CLONE_NEWNET before the test, setns(2) back after it:
    every bridge, veth, route and nftables rule made meanwhile (by minirun in
    this process or in the children it starts) lives in that namespace and
    goes away with it. The machine's own namespace is never touched.
    """
    import threading

    from minirun import libc
    from minirun.libc import lib

    own_path = "/proc/thread-self/ns/net"
    own = os.open(own_path, os.O_RDONLY)
    libc.unshare(lib.CLONE_NEWNET)
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield f"/proc/{os.getpid()}/task/{threading.get_native_id()}/ns/net"
    finally:
        libc.setns(own, lib.CLONE_NEWNET, "the test's original network namespace")
        os.close(own)


def host_links() -> list[str]:
    """The interfaces of the machine's own network namespace (PID 1's), wherever we are."""
    lines = Path("/proc/1/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


@pytest.fixture(autouse=True)
def machine_network_untouched():
    """Every test does its network work in a namespace of its own: the machine's own
    namespace has the same interfaces after each test as before it."""
    before = host_links()
    yield
    after = host_links()
    assert after == before, f"the machine's own network namespace changed: {before} -> {after}"


def own_v2_subtree_control() -> str | None:
    """cgroup.subtree_control of this process's own cgroup in the v2 hierarchy, if any."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            own = next(entry.split("::", 1)[1] for entry in
                       Path("/proc/self/cgroup").read_text().splitlines()
                       if entry.startswith("0::"))
            return os.path.join(fields[4], own.lstrip("/"), "cgroup.subtree_control")
    return None


def host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def cgroup_roots(name: str = CGROUP_ROOT) -> list[str]:
    """This run's cgroup root in every hierarchy that has one."""
    found = []
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(base) == name:
            found.append(base)
            dirs.clear()
    return found


def minirun_cgroup_dirs() -> list[str]:
    """Container cgroups below this run's cgroup root (the root itself goes at the end)."""
    return [os.path.join(root, d) for root in cgroup_roots()
            for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the whole run: no mounts, cgroups or named netns of minirun's remain.

    Processes cannot hide: every container lives in a cgroup below this run's
    root, and a cgroup with a process in it cannot be removed.
    """
    mounts_before = {line.split()[4] for line in host_mounts().splitlines()}
    netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    control = own_v2_subtree_control()
    enabled_before = set(Path(control).read_text().split()) if control else set()
    yield
    mounts_after = {line.split()[4] for line in host_mounts().splitlines()}
    new_mounts = sorted(mounts_after - mounts_before)
    for root in cgroup_roots():
        # the kubelet's QoS levels may stay below a root, but not in this run's own
        for level in ("kubepods/burstable", "kubepods/besteffort", "kubepods"):
            try:
                os.rmdir(os.path.join(root, level))
            except OSError:
                pass
    left_cgroups = minirun_cgroup_dirs()
    for root in cgroup_roots():
        try:
            os.rmdir(root)
        except OSError:
            pass   # not empty: reported below
    if control:
        # controllers the run enabled in our own v2 cgroup (hugetlb here) go back off
        for name in set(Path(control).read_text().split()) - enabled_before:
            try:
                Path(control).write_text(f"-{name}")
            except OSError:
                pass
    netns_after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    problems = []
    if new_mounts:
        problems.append(f"mounts: {new_mounts}")
    if left_cgroups or cgroup_roots():
        problems.append(f"cgroups: {left_cgroups or cgroup_roots()}")
    if netns_after - netns_before:
        problems.append(f"named network namespaces: {sorted(netns_after - netns_before)}")
    assert not problems, "the test run left things behind: " + "; ".join(problems)
