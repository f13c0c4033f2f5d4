"""The container's filesystem: mounts, /dev, pivot_root and the paths it hides.

Everything here runs in the container's init, inside its new mount
namespace (mount_namespaces(7)), in this order:

1. ``isolate_mounts``: make every mount a slave so nothing we do reaches the host.
2. ``mount_rootfs``: bind the rootfs onto itself (pivot_root wants a mount point).
3. ``mount_entry`` for each entry of config.json ``mounts``, inside the rootfs.
4. ``create_devices``: /dev/null and friends, and /dev's symlinks.
5. ``pivot_into``: pivot_root(2) and detach the old root.
6. ``make_readonly``, ``mask_paths``, ``remount_root_readonly``.

Mount destinations are resolved with ``secure_join``: a symlink inside the
rootfs (``../../etc``, ``/etc``) is followed *within* the rootfs, never out.
"""

from __future__ import annotations

import errno
import os
import stat

from minirun import libc
from minirun.config.mounts import Mount
from minirun.libc import lib

# runc's default devices (runtime-spec config-linux.md "Default Devices")
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                   ("urandom", 1, 9), ("tty", 5, 0))
DEV_SYMLINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
                ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"))
PRESERVED_FLAGS = lib.MS_NOSUID | lib.MS_NODEV | lib.MS_NOEXEC | lib.MS_RDONLY


def secure_join(root: str, unsafe: str) -> str:
    """Resolve ``unsafe`` as if ``root`` were ``/``: symlinks and ``..`` never leave it."""
    parts = unsafe.split("/")
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        full = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise libc.syscall_error("resolve", unsafe, errno.ELOOP)
            target = os.readlink(full)
            if target.startswith("/"):
                resolved = []
            parts = target.split("/") + parts
        else:
            resolved.append(part)
    return os.path.join(root, *resolved)


def isolate_mounts(propagation: int) -> None:
    """Turn the copied mount tree into slaves (or what rootfsPropagation asks)."""
    libc.mount(None, "/", None, lib.MS_REC | (propagation or lib.MS_SLAVE))


def mount_rootfs(rootfs: str) -> None:
    libc.mount(rootfs, rootfs, None, lib.MS_BIND | lib.MS_REC)


def mount_entry(rootfs: str, bundle: str, m: Mount) -> None:
    """Mount one config.json entry at its destination inside ``rootfs``."""
    target = secure_join(rootfs, m.destination)
    if m.is_bind:
        source = m.source if m.source.startswith("/") else os.path.join(bundle, m.source)
        _make_mount_point(target, directory=os.path.isdir(source))
        libc.mount(source, target, None, m.flags & (lib.MS_BIND | lib.MS_REC))
        extra = m.flags & ~(lib.MS_BIND | lib.MS_REC | lib.MS_REMOUNT)
        if extra:
            # a bind mount ignores other flags until it is remounted
            libc.mount(None, target, None,
                       lib.MS_REMOUNT | lib.MS_BIND | extra | _current_flags(target))
    elif m.type in ("cgroup", "cgroup2"):
        _make_mount_point(target, directory=True)
        mount_cgroups(target, m.flags)
    else:
        _make_mount_point(target, directory=True)
        try:
            libc.mount(m.source or m.type, target, m.type, m.flags, m.data or None)
        except OSError as e:
            if m.type != "sysfs" or e.errno != errno.EPERM:
                raise
            # sysfs belongs to a network namespace: without a new one, bind the host's
            libc.mount("/sys", target, None, lib.MS_BIND | lib.MS_REC)
            libc.mount(None, target, None, lib.MS_REMOUNT | lib.MS_BIND | lib.MS_RDONLY
                       | (m.flags & PRESERVED_FLAGS))
    for propagation in m.propagation or ():
        libc.mount(None, target, None, propagation)


def mount_cgroups(target: str, flags: int) -> None:
    """Mount the cgroup filesystems the host has, the way the host lays them out.

    Pure v2: one cgroup2 mount. v1 or hybrid: a tmpfs with one mount per v1
    hierarchy under it (and cgroup2 at ``unified`` on a hybrid host). In a new
    cgroup namespace each shows the container's own cgroup as its root.
    """
    from minirun.cgroups import detect_layout

    layout = detect_layout()
    if layout.kind == "v2":
        libc.mount("cgroup2", target, "cgroup2", flags)
        return
    libc.mount("tmpfs", target, "tmpfs", flags & ~lib.MS_RDONLY, "mode=755")
    for h in layout.hierarchies:
        name = os.path.basename(h.mountpoint)
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        if h.version == 2:
            libc.mount("cgroup2", sub, "cgroup2", flags)
        else:
            libc.mount("cgroup", sub, "cgroup", flags, ",".join(h.options))
    if flags & lib.MS_RDONLY:
        libc.mount(None, target, None, lib.MS_REMOUNT | flags | _current_flags(target))


def _make_mount_point(target: str, directory: bool) -> None:
    if directory:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))


def _current_flags(path: str) -> int:
    """The flags a remount must keep: the kernel refuses to drop locked ones."""
    st = os.statvfs(path)
    flags = 0
    for bit, flag in ((os.ST_NOSUID, lib.MS_NOSUID), (os.ST_NODEV, lib.MS_NODEV),
                      (os.ST_NOEXEC, lib.MS_NOEXEC), (os.ST_RDONLY, lib.MS_RDONLY)):
        if st.f_flag & bit:
            flags |= flag
    return flags


def create_devices(rootfs: str, devices: list, default_devices: bool, bind: bool) -> None:
    """Make device nodes in the container's /dev (mknod(2)), or bind the host's.

    In a user namespace mknod(2) is not allowed, so ``bind`` mounts the
    host's node over an empty file instead, as runc does.
    """
    wanted = []
    if default_devices:
        wanted = [(f"/dev/{name}", "c", major, minor, 0o666, 0, 0)
                  for name, major, minor in DEFAULT_DEVICES]
    wanted += [(d.path, d.type, d.major, d.minor, d.file_mode, d.uid, d.gid) for d in devices]
    old_umask = os.umask(0)
    try:
        for path, dtype, major, minor, mode, uid, gid in wanted:
            target = secure_join(rootfs, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if bind:
                _make_mount_point(target, directory=False)
                libc.mount(path, target, None, lib.MS_BIND)
                continue
            if os.path.lexists(target):
                os.unlink(target)
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                    "p": stat.S_IFIFO}[dtype]
            libc.mknod(target, kind | (mode & 0o7777), major, minor)
            os.chown(target, uid, gid)
    finally:
        os.umask(old_umask)
    if default_devices:
        dev = secure_join(rootfs, "/dev")
        for source, name in DEV_SYMLINKS:
            _symlink(source, os.path.join(dev, name))
        if os.path.exists("/proc/kcore"):
            _symlink("/proc/kcore", os.path.join(dev, "core"))
        if os.path.isdir(os.path.join(dev, "pts")):
            # the container's ptys come from its own devpts instance
            _symlink("pts/ptmx", os.path.join(dev, "ptmx"))


def _symlink(source: str, link: str) -> None:
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(source, link)


def pivot_into(rootfs: str) -> None:
    """pivot_root(2) into ``rootfs`` and detach the host's tree.

    ``pivot_root(".", ".")`` stacks the old root on top of the new one, so
    no put_old directory is needed; unmounting "." then removes the old root.
    """
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
    try:
        os.chdir(rootfs)
        libc.pivot_root(".", ".")
        os.fchdir(old_root)
        # the unmount below must not travel back to the host
        libc.mount(None, ".", None, lib.MS_SLAVE | lib.MS_REC)
        libc.umount2(".", lib.MNT_DETACH)
    finally:
        os.close(old_root)
    os.chdir("/")


def chroot_into(rootfs: str) -> None:
    """The ``--no-pivot`` fallback: move the rootfs over / and chroot(2) into it.

    For rootfs trees on a ramdisk, where pivot_root(2) fails. Weaker: the old
    root stays reachable to a process that can escape a chroot (CAP_SYS_CHROOT).
    """
    os.chdir(rootfs)
    libc.mount(rootfs, "/", None, lib.MS_MOVE)
    libc.chroot(".")
    os.chdir("/")


def set_root_propagation(propagation: int) -> None:
    """rootfsPropagation, applied once we live in the new root."""
    if propagation:
        libc.mount(None, "/", None, propagation)


def make_readonly(paths: list[str]) -> None:
    """linux.readonlyPaths: bind each path onto itself, then remount it read-only."""
    for path in paths:
        if not os.path.exists(path):
            continue
        libc.mount(path, path, None, lib.MS_BIND | lib.MS_REC)
        libc.mount(None, path, None, lib.MS_BIND | lib.MS_REMOUNT | lib.MS_RDONLY | lib.MS_REC
                   | _current_flags(path))


def mask_paths(paths: list[str]) -> None:
    """linux.maskedPaths: /dev/null over files, an empty read-only tmpfs over directories."""
    for path in paths:
        if os.path.isdir(path):
            libc.mount("tmpfs", path, "tmpfs", lib.MS_RDONLY)
        elif os.path.exists(path):
            libc.mount("/dev/null", path, None, lib.MS_BIND)


def remount_root_readonly() -> None:
    """root.readonly: the rootfs bind mount becomes read-only."""
    libc.mount(None, "/", None, lib.MS_BIND | lib.MS_REMOUNT | lib.MS_RDONLY | _current_flags("/"))
