"""Linux namespaces: which ones a container gets new, which it joins (namespaces(7)).

A new namespace comes from a flag to clone(2); an existing one is joined with
setns(2) on a file such as ``/proc/PID/ns/net``. The PID namespace is the odd
one out: setns(2) on it only decides where the caller's *next child* goes
(``/proc/self/ns/pid_for_children``), so it is joined by the parent, before
clone, and everything else by the child.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from minirun import libc
from minirun.libc import lib

# OCI type -> (clone flag, name under /proc/PID/ns/)
NAMESPACES = {
    "user": (lib.CLONE_NEWUSER, "user"),
    "mount": (lib.CLONE_NEWNS, "mnt"),
    "pid": (lib.CLONE_NEWPID, "pid"),
    "network": (lib.CLONE_NEWNET, "net"),
    "ipc": (lib.CLONE_NEWIPC, "ipc"),
    "uts": (lib.CLONE_NEWUTS, "uts"),
    "cgroup": (lib.CLONE_NEWCGROUP, "cgroup"),
}

# setns(2) order matters: the user namespace first (it grants the rights to
# join the others), the mount namespace last among those that change paths.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount")


@dataclass
class NamespaceFile:
    """An open namespace file, ready for setns(2)."""
    type: str
    path: str
    fd: int


def new_namespace_flags(namespaces: list) -> int:
    """The clone(2) flags for every namespace the config asks to create."""
    flags = 0
    for ns in namespaces:
        if ns.path is None:
            flags |= NAMESPACES[ns.type][0]
    return flags


def open_namespaces(namespaces: list) -> list[NamespaceFile]:
    """Open every namespace the config asks to join, in the order they must be joined."""
    files = []
    by_type = {ns.type: ns for ns in namespaces if ns.path}
    try:
        for ns_type in JOIN_ORDER:
            if ns_type in by_type:
                path = by_type[ns_type].path
                files.append(NamespaceFile(ns_type, path, os.open(path, os.O_RDONLY)))
    except OSError as e:
        close_namespaces(files)
        raise libc.syscall_error("open", e.filename, e.errno) from None
    return files


def close_namespaces(files: list[NamespaceFile]) -> None:
    for ns in files:
        os.close(ns.fd)


def join_namespace(ns: NamespaceFile) -> None:
    """setns(2) into one namespace; the kernel checks the file really is that type."""
    libc.setns(ns.fd, NAMESPACES[ns.type][0], f"{ns.path}, {ns.type}")


def namespace_path(pid: int | str, ns_type: str) -> str:
    """The /proc file naming a process's namespace of ``ns_type``."""
    return f"/proc/{pid}/ns/{NAMESPACES[ns_type][1]}"


def same_namespace(pid: int | str, other: int | str, ns_type: str) -> bool:
    """True if two processes share a namespace (same inode behind /proc/PID/ns/X)."""
    a = os.stat(namespace_path(pid, ns_type))
    b = os.stat(namespace_path(other, ns_type))
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def clone_into(flags: int, pid_ns: NamespaceFile | None = None) -> int:
    """clone(2) a child with new namespaces ``flags``, born inside ``pid_ns`` if given.

    setns(2) on a PID namespace leaves the caller where it is and changes only
    ``pid_for_children``; so the parent joins, clones, and steps back to its
    own namespace (allowed: it is the caller's active one). Returns 0 in the child.
    """
    if pid_ns is None:
        return libc.clone(flags)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY)
    pid = -1
    try:
        join_namespace(pid_ns)
        pid = libc.clone(flags)
    finally:
        if pid != 0:   # the parent (or a failed clone) goes back; the child stays
            libc.setns(own, lib.CLONE_NEWPID, "/proc/self/ns/pid")
        os.close(own)
    return pid


def write_id_mappings(pid: int, uid_mappings: list, gid_mappings: list) -> None:
    """Write /proc/PID/uid_map and gid_map for a child in a new user namespace.

    user_namespaces(7): each file is written once, by a process with rights in
    the parent namespace, one ``inside outside count`` line per range.
    """
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)
        path = f"/proc/{pid}/{name}"
        try:
            with open(path, "w") as fh:
                fh.write(text)
        except OSError as e:
            raise libc.syscall_error("write", path, e.errno) from None
