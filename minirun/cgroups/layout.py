"""Which cgroup hierarchy serves which controller: v1, v2 or hybrid (cgroups(7)).

Two tables tell it all:

- /proc/self/mountinfo (proc(5)) lists the cgroup mounts. A ``cgroup`` (v1)
  mount names its controllers in the super options (``rw,cpu,cpuacct``); a
  ``cgroup2`` mount is the single v2 tree, whose root file ``cgroup.controllers``
  lists the controllers not bound to any v1 hierarchy.
- /proc/self/cgroup names this process's own cgroup in each hierarchy
  (``4:memory:/process_api/abc``, ``0::/`` for v2). minirun makes its cgroups
  below those, never at a hierarchy root it does not own.

A *role* is what minirun needs done (limit memory, freeze, count CPU time);
each role goes to the one hierarchy that can do it. On a hybrid machine that
is a per-controller choice: here memory is v1 and hugetlb is v2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property

from minirun.errors import MinirunError

# v1 controllers minirun makes directories for (perf_event, net_cls, net_prio,
# rdma and misc are left alone: nothing minirun sets lives there).
V1_ROLES = ("cpu", "cpuacct", "cpuset", "memory", "pids", "hugetlb", "blkio", "devices",
            "freezer")
V1_KNOWN = set(V1_ROLES) | {"perf_event", "net_cls", "net_prio", "rdma", "misc"}
# v2 controller -> role; "io" does blkio's job. Core files every v2 cgroup has
# add three roles: cpu.stat (cpuacct), cgroup.freeze (freezer), and devices,
# which v2 controls with eBPF programs rather than files.
V2_ROLES = {"cpu": "cpu", "cpuset": "cpuset", "memory": "memory", "pids": "pids",
            "hugetlb": "hugetlb", "io": "blkio"}
V2_CORE_ROLES = ("cpuacct", "freezer", "devices")


@dataclass
class Hierarchy:
    """One cgroup mount: a v1 hierarchy or the v2 tree."""
    version: int                      # 1 or 2
    mountpoint: str                   # /sys/fs/cgroup/memory
    options: tuple[str, ...]          # v1: controllers and name=, as mount(8) takes them
    mount_root: str = "/"             # the cgroup shown at the mount point (mountinfo field 4)
    own_cgroup: str = "/"             # this process's cgroup in it (/proc/self/cgroup)
    roles: tuple[str, ...] = ()       # the roles minirun gives this hierarchy

    @cached_property
    def own_dir(self) -> str:
        """The directory of this process's own cgroup, seen through this mount."""
        rel = os.path.relpath(self.own_cgroup, self.mount_root)
        if rel.startswith(".."):
            return self.mountpoint    # our cgroup is outside what the mount shows
        return os.path.normpath(os.path.join(self.mountpoint, rel))

    @property
    def key(self) -> str:
        return "unified" if self.version == 2 else ",".join(self.options)


@dataclass
class Layout:
    kind: str                                       # "v1", "v2" or "hybrid"
    hierarchies: list[Hierarchy] = field(default_factory=list)

    def for_role(self, role: str) -> Hierarchy | None:
        return next((h for h in self.hierarchies if role in h.roles), None)

    def managed(self) -> list[Hierarchy]:
        """Hierarchies minirun makes directories in: every one with a role, and v2 always
        (its cgroup.kill and cgroup.events work without any controller)."""
        return [h for h in self.hierarchies if h.roles or h.version == 2]


_cache: dict[str, Layout] = {}


def detect_layout(fs_root: str = "/") -> Layout:
    """Read the mount table and this process's cgroups (cached per ``fs_root``).

    ``fs_root`` prefixes every path read, /proc/self/... and the mount points
    alike, so tests can hand in a fake tree with a v1-only or v2-only layout.
    """
    if fs_root not in _cache:
        _cache[fs_root] = _detect(fs_root)
    return _cache[fs_root]


def _detect(fs_root: str) -> Layout:
    own = _own_cgroups(os.path.join(fs_root, "proc/self/cgroup"))
    hierarchies: list[Hierarchy] = []
    seen: set[tuple[str, ...]] = set()
    for fstype, mountpoint, mount_root, super_options in _cgroup_mounts(fs_root):
        path = os.path.join(fs_root, mountpoint.lstrip("/"))
        if fstype == "cgroup2":
            options: tuple[str, ...] = ()
        else:
            options = tuple(o for o in super_options.split(",")
                            if o in V1_KNOWN or o.startswith("name="))
            if not options:
                continue
        if options in seen:
            continue          # the same hierarchy mounted twice: the first one serves
        seen.add(options)
        version = 2 if fstype == "cgroup2" else 1
        hierarchies.append(Hierarchy(version, path, options, mount_root,
                                     own.get(frozenset(options), "/")))
    if not hierarchies:
        raise MinirunError("no cgroup filesystem is mounted (see /proc/self/mountinfo)")
    _assign_roles(hierarchies)
    v1 = any(h.version == 1 and h.roles for h in hierarchies)
    v2 = any(h.version == 2 for h in hierarchies)
    return Layout("hybrid" if v1 and v2 else "v2" if v2 else "v1", hierarchies)


def _assign_roles(hierarchies: list[Hierarchy]) -> None:
    taken: set[str] = set()
    for h in hierarchies:
        if h.version == 1:
            h.roles = tuple(o for o in h.options if o in V1_ROLES)
            taken.update(h.roles)
    for h in hierarchies:
        if h.version == 2:
            try:
                with open(os.path.join(h.mountpoint, "cgroup.controllers")) as fh:
                    controllers = fh.read().split()
            except FileNotFoundError:
                controllers = []
            roles = [V2_ROLES[c] for c in controllers if c in V2_ROLES]
            # a role a v1 hierarchy already has stays there (that is the hybrid case)
            h.roles = tuple(r for r in (*roles, *V2_CORE_ROLES) if r not in taken)


def _cgroup_mounts(fs_root: str) -> list[tuple[str, str, str, str]]:
    """(fstype, mount point, mount root, super options) of each cgroup mount."""
    mounts = []
    with open(os.path.join(fs_root, "proc/self/mountinfo")) as fh:
        for line in fh:
            # id parent major:minor root mountpoint options [optional...] - fstype source super
            left, _, right = line.partition(" - ")
            fstype, _, rest = right.partition(" ")
            if fstype not in ("cgroup", "cgroup2"):
                continue
            fields = left.split()
            super_options = rest.split()[1] if len(rest.split()) > 1 else ""
            mounts.append((fstype, _unescape(fields[4]), _unescape(fields[3]), super_options))
    return mounts


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in text:
        return text
    return text.encode().decode("unicode_escape").encode("latin-1").decode()


def _own_cgroups(path: str) -> dict[frozenset[str], str]:
    """/proc/self/cgroup keyed by controller set: {{"cpu", "cpuacct"}: "/user.slice"};
    the v2 line (``0::/``) has the empty set."""
    own = {}
    with open(path) as fh:
        for line in fh:
            _, controllers, cgroup = line.rstrip("\n").split(":", 2)
            own[frozenset(c for c in controllers.split(",") if c)] = cgroup
    return own


def default_root() -> str:
    """The cgroup root containers go under unless ``--cgroup-root`` says otherwise.

    Relative, because this process's own cgroup differs per hierarchy
    (memory:/process_api/abc but cpu:/ on this machine): a relative root is
    taken from the own cgroup in each hierarchy, an absolute one from each
    mount point. $MINIRUN_CGROUP_ROOT overrides the default, as the CLI's
    ``--cgroup-root`` does.
    """
    return os.environ.get("MINIRUN_CGROUP_ROOT") or "minirun"
