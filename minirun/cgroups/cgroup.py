"""One container's cgroup: a directory in every hierarchy minirun manages.

On pure v2 that is one directory; on v1 one per hierarchy; on a hybrid
machine both kinds. Each directory knows its version and the roles it serves
(layout.py), and the v1 or v2 module does the version-specific part.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field

from minirun.cgroups import files, v1, v2
from minirun.cgroups.layout import V2_ROLES, Layout, default_root, detect_layout
from minirun.config.resources import Resources
from minirun.errors import ConfigError, MinirunError

REMOVE_TIMEOUT = 10.0    # seconds destroy() waits for the kernel to empty a cgroup (slow VMs)
WHERE = "linux.resources"


@dataclass
class CgroupDir:
    """The container's directory in one hierarchy."""
    version: int
    roles: tuple[str, ...]
    path: str                    # the container's cgroup
    keep: str                    # the cgroup root: it and everything above it stays
    start: str                   # where create() starts walking (own cgroup or mount point)
    created: list[str] = field(default_factory=list)    # made by create(), outermost first
    enabled: set[str] = field(default_factory=set)      # v2: controllers that reach it


@dataclass
class Cgroup:
    dirs: list[CgroupDir]

    # --- placement ------------------------------------------------------------------

    @classmethod
    def for_container(cls, cgroups_path: str | None, container_id: str, root: str | None = None,
                      layout: Layout | None = None) -> Cgroup:
        """Where the container's cgroup goes in each hierarchy (nothing is made yet).

        ``cgroups_path`` is OCI ``linux.cgroupsPath``: relative, it goes below the
        root; absolute, it is taken from each hierarchy's mount point; None means
        ``<root>/<container_id>``. ``root`` (``--cgroup-root``) defaults to
        default_root(): relative roots start at this process's own cgroup.
        """
        layout = layout or detect_layout()
        root = root or default_root()
        name = cgroups_path or container_id
        for part in (root, name):
            if ".." in part.split("/"):
                raise ConfigError("linux.cgroupsPath", f"{part!r} must not contain '..'")
        dirs = []
        for h in layout.managed():
            if name.startswith("/"):
                start = keep = h.mountpoint
            else:
                start = h.mountpoint if root.startswith("/") else h.own_dir
                keep = os.path.normpath(os.path.join(start, root.lstrip("/")))
            path = os.path.normpath(os.path.join(keep, name.lstrip("/")))
            if path == keep:
                raise ConfigError("linux.cgroupsPath", f"{name!r} names the cgroup root itself")
            dirs.append(CgroupDir(h.version, h.roles, path, keep, start))
        return cls(dirs)

    def dir_for(self, role: str) -> str | None:
        """The container's directory in the hierarchy serving ``role`` (e.g. "memory")."""
        d = self._serving(role)
        return d.path if d is not None else None

    def _serving(self, role: str) -> CgroupDir | None:
        return next((d for d in self.dirs if role in d.roles), None)

    def _dirs_of(self, version: int) -> dict[str, str]:
        dirs = {role: d.path for d in self.dirs if d.version == version for role in d.roles}
        unified = next((d.path for d in self.dirs if d.version == 2), None)
        if version == 2 and unified is not None:
            dirs["unified"] = unified
        return dirs

    # --- create, update, destroy ------------------------------------------------------

    def create(self, resources: Resources | None) -> None:
        """Check, mkdir(2) in every hierarchy, write the limits; undo it all on failure."""
        resources = resources or Resources()
        self._check(resources, WHERE)
        try:
            for d in self.dirs:
                self._make(d)
            self._refuse_occupied()
            self._check_v2_controllers(resources, WHERE)
            self._write_all(self.writes_for(resources, WHERE))
        except BaseException:
            try:
                self._remove(list(reversed(self.dirs)), made_only=True)
            except MinirunError:
                pass     # the first error is the one worth reporting
            raise

    def update(self, resources: Resources, where: str = WHERE) -> None:
        """Change the limits of a live cgroup; fields left None stay as they are."""
        self._check(resources, where)
        memory = self._serving("memory")
        limit = resources.memory.limit if resources.memory else None
        if memory is not None and limit not in (None, -1):
            # v1 would fail with EBUSY after reclaiming what it can; v2 would OOM-kill
            used = (v2 if memory.version == 2 else v1).memory_usage(memory.path)
            if limit < used:
                raise ConfigError(f"{where}.memory.limit", f"{limit} bytes is below what the "
                                  f"cgroup already uses ({used} bytes)")
        self._write_all(self.writes_for(resources, where))

    def writes_for(self, resources: Resources, where: str = WHERE) -> list[files.Write]:
        """Every file write ``resources`` becomes, in order (also what create/update do)."""
        return (v1.writes(resources, self._dirs_of(1), where)
                + v2.writes(resources, self._dirs_of(2), where))

    def destroy(self) -> None:
        """rmdir(2) the container's directories, deepest first, on every hierarchy.

        Nothing is killed here: the kernel refuses (EBUSY) to remove a cgroup
        that still has processes, so this retries briefly while dying
        processes leave, then reports what is still inside.
        """
        self._remove(list(reversed(self.dirs)), made_only=False)

    def _make(self, d: CgroupDir) -> None:
        """mkdir(2) the container's directory, and its parents where they are missing."""
        todo = [d.path]
        while todo:
            path = todo[-1]
            try:
                made = files.make_dir(path)
            except FileNotFoundError:
                if path == d.start:
                    raise
                todo.append(os.path.dirname(path))     # make the parent first
                continue
            todo.pop()
            if not made:
                continue
            if path.startswith(d.keep + os.sep):
                d.created.append(path)
            if d.version == 1 and "cpuset" in d.roles:
                v1.copy_cpuset(path)
        if d.version == 2:
            d.enabled = v2.enable_controllers(d.start, d.path, d.roles)

    def _remove(self, dirs: list[CgroupDir], made_only: bool) -> None:
        problems = []
        for d in dirs:
            try:
                if not made_only or d.path in d.created:
                    _remove_tree(d.path)     # already gone is fine
                for path in reversed(d.created):
                    if path != d.path and not files.has_children(path):
                        try:
                            files.remove_dir(path)
                        except OSError as e:
                            if e.errno != errno.EBUSY:   # another container just moved in
                                raise
                d.created = []
            except (OSError, MinirunError) as e:
                problems.append(str(e))
        if problems:
            raise MinirunError("; ".join(problems))

    # --- checks -----------------------------------------------------------------------

    def _check(self, res: Resources, where: str) -> None:
        """Every field must reach a hierarchy that can apply it, before anything is made."""
        for key, role in _roles_needed(res):
            if not any(role in d.roles for d in self.dirs):
                raise ConfigError(f"{where}.{key}", f"this machine has no {role} controller "
                                  "that minirun can use (see /proc/cgroups and /proc/mounts)")
        v2_roles = set(self._dirs_of(2))
        for key in res.unified:
            controller = key.split(".")[0]
            role = V2_ROLES.get(controller, controller)
            if not self._dirs_of(2) or (controller != "cgroup" and role not in v2_roles):
                raise ConfigError(f"{where}.unified.{key}", f"the {controller} controller is not "
                                  "on cgroup v2 here; unified only sets cgroup v2 files")
        v2.refuse_unsupported(res, v2_roles, where)

    def _refuse_occupied(self) -> None:
        """A cgroup that existed already must not hold processes: sharing it would put
        another container's processes under these limits and in kill_all()'s reach."""
        for d in self.dirs:
            if d.path not in d.created:
                procs = files.read_procs(d.path)
                if procs:
                    raise MinirunError(f"cgroup {d.path} is not empty: processes {procs} are "
                                       "already in it (another container with the same cgroup "
                                       "path?)")

    def _check_v2_controllers(self, res: Resources, where: str) -> None:
        """After enabling: a controller the parent withholds cannot be used."""
        for d in self.dirs:
            if d.version != 2:
                continue
            for key, role in _roles_needed(res):
                controller = v2.ROLE_CONTROLLER.get(role)
                if role in d.roles and controller and controller not in d.enabled:
                    raise ConfigError(f"{where}.{key}", f"the {controller} controller is not "
                                      f"available in {os.path.dirname(d.path)}/cgroup.controllers")

    def _write_all(self, writes: list[files.Write]) -> None:
        for w in writes:
            try:
                files.write_file(w.path, w.value)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    why = f"; {w.refused}" if w.refused else ""
                    raise ConfigError(w.where, f"the kernel refused it: {e}{why}") from None
                if not os.path.isdir(os.path.dirname(w.path)):
                    raise MinirunError(f"cgroup {os.path.dirname(w.path)} does not exist") \
                        from None
                raise ConfigError(w.where, w.missing or f"this kernel has no "
                                  f"{os.path.basename(w.path)}") from None

    # --- processes --------------------------------------------------------------------

    def add_process(self, pid: int) -> None:
        """Write ``pid`` to cgroup.procs in every hierarchy: the process and its future
        children now count against every limit."""
        for d in self.dirs:
            files.write_file(os.path.join(d.path, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        """Every process in the cgroup and the cgroups below it."""
        d = self._tracking_dir()
        found: list[int] = []
        for base, _, _ in os.walk(d.path):
            found += files.read_procs(base)
        return sorted(set(found))

    def kill_all(self, sig: int) -> None:
        """Signal every process in the cgroup; a missing cgroup has none to signal.

        SIGKILL on v2 is one write to cgroup.kill. Otherwise the cgroup is frozen
        first, so no process can fork a child the signal would miss, then thawed
        (a v1-frozen process does not even die of SIGKILL until thawed).
        """
        d = self._tracking_dir()
        if not os.path.isdir(d.path):
            return
        if sig == signal.SIGKILL and d.version == 2 and v2.kill(d.path):
            return
        frozen_before = self.is_frozen()
        froze = False
        if self._serving("freezer") is not None and not frozen_before:
            try:
                self.freeze()
                froze = True
            except MinirunError:
                pass          # a task that cannot be frozen: signal without the freezer
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if froze or (frozen_before and sig == signal.SIGKILL):
                self.thaw()

    def _tracking_dir(self) -> CgroupDir:
        """The hierarchy to list processes from: v2 if there is one, else pids/freezer."""
        for test in (lambda d: d.version == 2, lambda d: "pids" in d.roles,
                     lambda d: "freezer" in d.roles):
            d = next((d for d in self.dirs if test(d)), None)
            if d is not None:
                return d
        return self.dirs[0]

    # --- freezer ----------------------------------------------------------------------

    def _freezer(self) -> tuple[object, str]:
        d = self._serving("freezer")
        if d is None:
            raise MinirunError("this machine has no cgroup freezer (v1 freezer or v2 "
                               "cgroup.freeze) to pause with")
        return (v2 if d.version == 2 else v1), d.path

    def freeze(self) -> None:
        """Stop every process in the cgroup where it stands (runc pause)."""
        driver, path = self._freezer()
        driver.freeze(path)

    def thaw(self) -> None:
        driver, path = self._freezer()
        driver.thaw(path)

    def is_frozen(self) -> bool:
        """True once every process is stopped (runc's "paused"); False without a freezer."""
        d = self._serving("freezer")
        try:
            return d is not None and (v2 if d.version == 2 else v1).is_frozen(d.path)
        except FileNotFoundError:
            return False

    # --- what the kernel measured -----------------------------------------------------

    def stats(self) -> dict:
        """CPU usage and throttling, memory, pids and hugetlb, in runc's events shape.

        Times are nanoseconds, sizes bytes; a limit of None means no limit.
        """
        merged: dict = {}
        for part in (v1.stats(self._dirs_of(1)), v2.stats(self._dirs_of(2))):
            for key, value in part.items():
                merged.setdefault(key, {}).update(value)
        return merged

    def oom_kill_count(self) -> int:
        """How many processes the kernel's OOM killer took from this cgroup."""
        d = self._serving("memory")
        if d is None:
            return 0
        try:
            return (v2 if d.version == 2 else v1).oom_kill_count(d.path)
        except FileNotFoundError:
            return 0

    # --- state.json -------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"dirs": [{"version": d.version, "roles": list(d.roles), "path": d.path,
                          "keep": d.keep, "start": d.start, "created": list(d.created)}
                         for d in self.dirs]}

    @classmethod
    def from_dict(cls, data: dict) -> Cgroup:
        return cls([CgroupDir(d["version"], tuple(d["roles"]), d["path"], d["keep"],
                              d["start"], list(d["created"])) for d in data["dirs"]])


def _roles_needed(res: Resources) -> list[tuple[str, str]]:
    """(field, role) for every field that is set."""
    needed = []
    if res.cpu is not None:
        for key in ("shares", "quota", "period", "burst", "realtime_runtime", "realtime_period",
                    "idle"):
            if getattr(res.cpu, key) is not None:
                needed.append((f"cpu.{_camel(key)}", "cpu"))
        for key in ("cpus", "mems"):
            if getattr(res.cpu, key) is not None:
                needed.append((f"cpu.{key}", "cpuset"))
    if res.memory is not None:
        for key in ("limit", "reservation", "swap", "swappiness", "disable_oom_killer"):
            if getattr(res.memory, key) is not None:
                needed.append((f"memory.{_camel(key)}", "memory"))
    if res.pids_limit is not None:
        needed.append(("pids.limit", "pids"))
    needed += [(f"hugepageLimits[{i}]", "hugetlb") for i in range(len(res.hugepage_limits))]
    if res.block_io_weight is not None:
        needed.append(("blockIO.weight", "blkio"))
    if res.devices:
        needed.append(("devices", "devices"))
    return needed


def _camel(key: str) -> str:
    if key == "disable_oom_killer":
        return "disableOOMKiller"
    first, *rest = key.split("_")
    return first + "".join(word.title() for word in rest)


def _remove_tree(path: str) -> None:
    """rmdir the cgroup, and first any cgroups a container made below it, deepest first."""
    deadline = time.monotonic() + REMOVE_TIMEOUT
    delay = 0.0005
    while True:
        try:
            files.remove_dir(path)
            return
        except OSError as e:
            if e.errno == errno.EBUSY and files.has_children(path):
                for entry in os.scandir(path):
                    if entry.is_dir(follow_symlinks=False):
                        _remove_tree(entry.path)
                continue
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                left = files.read_procs(path)
                raise MinirunError(f"cannot remove cgroup {path}: {e}"
                                   + (f" (processes still in it: {left})" if left else "")) \
                    from None
        time.sleep(delay)     # dying processes leave the cgroup a moment after SIGKILL
        delay = min(delay * 2, 0.05)
