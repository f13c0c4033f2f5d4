"""A fake /proc/self and /sys/fs/cgroup for the layouts this machine lacks (pure v1, pure v2).

It is a plain directory tree plus three stand-ins for the kernel's side of mkdir(2),
rmdir(2) and write(2) on cgroupfs: a new directory gets its hierarchy's interface files,
subtree_control writes follow the v2 rules, and every write is logged so a test can
check exactly what minirun wrote and in what order.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from minirun.cgroups import cgroup, files, v1, v2
from minirun.libc import syscall_error

V1_FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1",
            "cpu.cfs_burst_us": "0", "cpu.idle": "0",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0"},
    "cpuacct": {"cpuacct.usage": "0", "cpuacct.stat": "user 0\nsystem 0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    # no memory.memsw.*: a kernel without swap accounting
    "memory": {"memory.limit_in_bytes": "9223372036854771712",
               "memory.soft_limit_in_bytes": "9223372036854771712", "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0",
               "memory.usage_in_bytes": "0", "memory.max_usage_in_bytes": "0",
               "memory.failcnt": "0"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "freezer": {"freezer.state": "THAWED"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "blkio": {"blkio.weight": "500"},
    "hugetlb": {f"hugetlb.2MB.{name}": "0" for name in ("limit_in_bytes", "usage_in_bytes",
                                                         "max_usage_in_bytes", "failcnt")},
}
V2_FILES = {
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.max": "max", "memory.high": "max", "memory.low": "0",
               "memory.swap.max": "max",
               "memory.current": "0", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "io": {"io.weight": "default 100"},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0",
                "hugetlb.2MB.events": "max 0"},
}
V2_CORE = {"cgroup.procs": "", "cgroup.controllers": "", "cgroup.subtree_control": "",
           "cgroup.events": "populated 0\nfrozen 0", "cgroup.freeze": "0", "cgroup.kill": "",
           "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0"}
V1_MOUNTS = ("cpu,cpuacct", "cpuset", "memory", "pids", "freezer", "devices", "blkio", "hugetlb")


class FakeCgroupfs:
    """``FakeCgroupfs(tmp_path, "v1")``: the tree, with this process in ``own`` everywhere."""

    def __init__(self, root: Path, kind: str, own: str = "/lab") -> None:
        self.root = root
        self.kind = kind
        self.writes: list[tuple[str, str]] = []     # (path below root, value)
        self.cgroup_root = root / "sys/fs/cgroup"
        mounts, cgroups = [], []
        if kind == "v1":
            for i, name in enumerate((*V1_MOUNTS, "systemd"), start=30):
                options = "name=systemd" if name == "systemd" else name
                mounts.append(f"{i} 20 0:{i} / /sys/fs/cgroup/{name} rw,relatime - cgroup "
                              f"cgroup rw,{options}")
                cgroups.append(f"{i}:{options}:{own}")
                self._make_root(self.cgroup_root / name, name)
        else:
            mounts.append("30 20 0:30 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw")
            cgroups.append(f"0::{own}")
            self._make_root(self.cgroup_root, "")
        (root / "proc/self").mkdir(parents=True)
        (root / "proc/self/mountinfo").write_text(
            "20 1 0:20 / /sys rw - sysfs sysfs rw\n" + "\n".join(mounts) + "\n")
        (root / "proc/self/cgroup").write_text("\n".join(cgroups) + "\n")
        for base in self._hierarchy_dirs():
            path = base
            for part in own.strip("/").split("/"):
                path = path / part
                self.mkdir(str(path))
                if "cpuset" in path.relative_to(self.cgroup_root).parts[0] and kind == "v1":
                    self._fill(path, {"cpuset.cpus": "0-3", "cpuset.mems": "0"})

    # --- the kernel's side ----------------------------------------------------------

    def _hierarchy_dirs(self) -> list[Path]:
        if self.kind == "v2":
            return [self.cgroup_root]
        return [self.cgroup_root / name for name in (*V1_MOUNTS, "systemd")]

    def _make_root(self, path: Path, name: str) -> None:
        path.mkdir(parents=True)
        if self.kind == "v2":
            # as on a booted system, the root already hands every controller down
            self._fill(path, {**V2_CORE, "cgroup.controllers": " ".join(V2_FILES),
                              "cgroup.subtree_control": " ".join(V2_FILES)})
        else:
            self._fill(path, {"cgroup.procs": ""})
            if "cpuset" in name:
                self._fill(path, {"cpuset.cpus": "0-3", "cpuset.mems": "0"})

    @staticmethod
    def _fill(path: Path, contents: dict[str, str]) -> None:
        for name, text in contents.items():
            (path / name).write_text(text + "\n" if text else "")

    def _hierarchy(self, path: Path) -> str:
        return path.relative_to(self.cgroup_root).parts[0]

    def mkdir(self, path: str) -> bool:
        p = Path(path)
        if p.exists():
            return False
        if not p.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        p.mkdir()
        if self.kind == "v1":
            self._fill(p, {"cgroup.procs": ""})
            for controller in self._hierarchy(p).split(","):
                self._fill(p, V1_FILES.get(controller, {}))
        else:
            enabled = (p.parent / "cgroup.subtree_control").read_text().split()
            self._fill(p, {**V2_CORE, "cgroup.controllers": " ".join(enabled)})
            for controller in enabled:
                self._fill(p, V2_FILES[controller])
        return True

    def rmdir(self, path: str) -> bool:
        p = Path(path)
        if not p.exists():
            return False
        if any(c.is_dir() for c in p.iterdir()) or (p / "cgroup.procs").read_text().strip():
            raise syscall_error("rmdir", path, errno.EBUSY)
        shutil.rmtree(p)
        return True

    def write(self, path: str, value: str) -> None:
        p = Path(path)
        if not p.is_file():
            raise syscall_error("open", path, errno.ENOENT)
        self.writes.append((str(p.relative_to(self.root)), value))
        if p.name == "cgroup.subtree_control":
            self._subtree_control(p, value)
        elif p.name == "cgroup.freeze":
            (p.parent / "cgroup.events").write_text(f"populated 0\nfrozen {value}\n")
        elif p.name == "cgroup.procs":
            p.write_text(p.read_text() + value + "\n")
        else:
            p.write_text(value + "\n")

    def _subtree_control(self, p: Path, value: str) -> None:
        """cgroup-v2.rst: only controllers the cgroup has; none if it holds processes."""
        available = (p.parent / "cgroup.controllers").read_text().split()
        enabled = set(p.read_text().split())
        for token in value.split():
            if token[1:] not in available:
                raise syscall_error("write", f"{p}, {value!r}", errno.EINVAL)
            if p.parent != self.cgroup_root and (p.parent / "cgroup.procs").read_text().strip():
                raise syscall_error("write", f"{p}, {value!r}", errno.EBUSY)
            (enabled.add if token[0] == "+" else enabled.discard)(token[1:])
        p.write_text(" ".join(sorted(enabled)) + "\n")
        for child in p.parent.iterdir():         # files appear in the children at once
            if child.is_dir():
                (child / "cgroup.controllers").write_text(" ".join(sorted(enabled)) + "\n")
                for controller in enabled:
                    for name, text in V2_FILES[controller].items():
                        if not (child / name).exists():
                            (child / name).write_text(text + "\n")

    def install(self, monkeypatch) -> None:
        """Route minirun's mkdir, rmdir and writes through this fake kernel."""
        monkeypatch.setattr(files, "make_dir", self.mkdir)
        monkeypatch.setattr(files, "remove_dir", self.rmdir)
        for module in (files, v1, v2, cgroup):
            if hasattr(module, "write_file"):
                monkeypatch.setattr(module, "write_file", self.write)

    def written(self, name: str) -> list[str]:
        """Values written to files whose path ends with ``name``, in order."""
        return [value for path, value in self.writes if path.endswith(name)]

    def own(self, hierarchy: str = "") -> Path:
        """This process's own cgroup in a hierarchy (v1: the mount's name)."""
        base = self.cgroup_root / hierarchy if hierarchy else self.cgroup_root
        return base / "lab"
