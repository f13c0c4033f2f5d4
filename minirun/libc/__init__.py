"""The libc layer: thin Python wrappers over the system calls minirun makes.

Each wrapper calls exactly one function of the compiled cffi module (declared
in ``declarations.py``) and turns a -1 return into ``OSError`` whose message
names the call, its main argument and the errno name, the way strace would:
``mount(/proc, proc): EPERM``. Nothing above this module touches cffi.
"""

from __future__ import annotations

import errno
import os

from minirun.libc._libc import ffi, lib

__all__ = ["ffi", "lib"]


class SyscallError(OSError):
    """An OSError that prints as ``call(arg): ENAME (description)`` and nothing more."""

    def __str__(self) -> str:
        return self.strerror


def syscall_error(call: str, arg: object, err: int | None = None) -> SyscallError:
    """Build the error for a failed call from errno (or ``err``)."""
    if err is None:
        err = ffi.errno
    name = errno.errorcode.get(err, f"errno {err}")
    return SyscallError(err, f"{call}({arg}): {name} ({os.strerror(err)})")


def _check(ret: int, call: str, arg: object) -> int:
    if ret == -1:
        raise syscall_error(call, arg)
    return ret


def _c(s: str | bytes | None):
    if s is None:
        return ffi.NULL
    return s.encode() if isinstance(s, str) else s


# --- processes and namespaces: clone(2), unshare(2), setns(2) -------------

def clone(flags: int) -> int:
    """clone(2) used like fork(2): the child gets new namespaces from ``flags``.

    The raw system call with a NULL stack makes the child continue on a copy
    of the parent's stack, so both return here: 0 in the child, the child's
    PID in the parent. Unlike ``os.fork`` nothing of Python's at-fork
    machinery runs, which is safe because minirun never starts threads.
    """
    return _check(lib.syscall(lib.SYS_clone, ffi.cast("long", flags | lib.SIGCHLD),
                              ffi.cast("long", 0), ffi.cast("long", 0),
                              ffi.cast("long", 0), ffi.cast("long", 0)),
                  "clone", describe_clone_flags(flags))


def describe_clone_flags(flags: int) -> str:
    names = [name for name, bit in CLONE_FLAGS.items() if flags & bit]
    return "|".join(names) or "0"


def unshare(flags: int) -> None:
    """unshare(2): move this process into new namespaces."""
    _check(lib.unshare(flags), "unshare", describe_clone_flags(flags))


def setns(fd: int, nstype: int, what: str) -> None:
    """setns(2): join the namespace that ``fd`` refers to (``what`` names it in errors)."""
    _check(lib.setns(fd, nstype), "setns", what)


def pidfd_open(pid: int) -> int:
    """pidfd_open(2): a file descriptor that always means this very process."""
    return _check(lib.syscall(lib.SYS_pidfd_open, ffi.cast("long", pid), ffi.cast("long", 0)),
                  "pidfd_open", pid)


def pidfd_send_signal(pidfd: int, sig: int, what: object) -> None:
    """pidfd_send_signal(2): signal a process without the risk of PID reuse."""
    _check(lib.syscall(lib.SYS_pidfd_send_signal, ffi.cast("long", pidfd), ffi.cast("long", sig),
                       ffi.cast("long", 0), ffi.cast("long", 0)),
           "pidfd_send_signal", what)


def close_range_cloexec(first: int) -> None:
    """close_range(2) with CLOSE_RANGE_CLOEXEC: nothing from ``first`` on survives execve."""
    close_range_cloexec_flag = 4
    _check(lib.syscall(lib.SYS_close_range, ffi.cast("long", first), ffi.cast("long", -1),
                       ffi.cast("long", close_range_cloexec_flag)),
           "close_range", f"{first}, ~0, CLOSE_RANGE_CLOEXEC")


# --- mounts: mount(2), umount2(2), pivot_root(2), chroot(2), mknod(2) ------

def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2). Errors read ``mount(target, fstype): EPERM``."""
    ret = lib.mount(_c(source), _c(target), _c(fstype), flags, _c(data))
    _check(ret, "mount", f"{target}, {fstype or source or describe_mount_flags(flags)}")


def describe_mount_flags(flags: int) -> str:
    names = [name for name, bit in MOUNT_FLAGS.items() if flags & bit]
    return "|".join(names) or "0"


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(lib.umount2(_c(target), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): glibc has no wrapper, so this is the raw system call."""
    _check(lib.syscall(lib.SYS_pivot_root, ffi.new("char[]", _c(new_root)),
                       ffi.new("char[]", _c(put_old))),
           "pivot_root", f"{new_root}, {put_old}")


def chroot(path: str) -> None:
    """chroot(2)."""
    _check(lib.chroot(_c(path)), "chroot", path)


def mknod(path: str, mode: int, major: int, minor: int) -> None:
    """mknod(2) for a device node; the dev_t encoding is makedev(3)'s."""
    _check(lib.mknod(_c(path), mode, os.makedev(major, minor)), "mknod", path)


# --- identity ----------------------------------------------------------------

def sethostname(name: str) -> None:
    """sethostname(2): only this UTS namespace sees the change."""
    raw = name.encode()
    _check(lib.sethostname(raw, len(raw)), "sethostname", name)


def setdomainname(name: str) -> None:
    """setdomainname(2)."""
    raw = name.encode()
    _check(lib.setdomainname(raw, len(raw)), "setdomainname", name)


def setgroups(gids: list[int]) -> None:
    """setgroups(2): the supplementary groups."""
    arr = ffi.new("unsigned int[]", gids or [0])
    _check(lib.setgroups(len(gids), arr), "setgroups", gids)


def setresgid(gid: int) -> None:
    """setresgid(2): real, effective and saved group ID all become ``gid``."""
    _check(lib.setresgid(gid, gid, gid), "setresgid", gid)


def setresuid(uid: int) -> None:
    """setresuid(2): real, effective and saved user ID all become ``uid``."""
    _check(lib.setresuid(uid, uid, uid), "setresuid", uid)


# --- prctl(2) and capabilities(7) -------------------------------------------

def prctl(option: int, arg2: int = 0, what: str = "") -> int:
    """prctl(2) with one argument, which is all minirun needs."""
    return _check(lib.prctl(option, arg2, 0, 0, 0), "prctl", what or option)


def prctl_ambient(op: int, cap: int = 0) -> None:
    """prctl(PR_CAP_AMBIENT, op, cap): raise one ambient capability or clear all."""
    _check(lib.prctl(lib.PR_CAP_AMBIENT, op, cap, 0, 0), "prctl", f"PR_CAP_AMBIENT, {cap}")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) on this thread with the 64-bit masks split into two 32-bit words."""
    header = ffi.new("cap_user_header *", {"version": lib.CAP_VERSION_3, "pid": 0})
    data = ffi.new("cap_user_data[2]")
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(lib.capset(header, data), "capset", f"eff={effective:#x}")


def ioctl_int(fd: int, request: int, arg: int, what: str) -> None:
    """ioctl(2) with an integer argument (TIOCSCTTY)."""
    _check(lib.ioctl(fd, ffi.cast("unsigned long", request), ffi.cast("int", arg)), "ioctl", what)


CLONE_FLAGS = {
    "CLONE_NEWNS": lib.CLONE_NEWNS,
    "CLONE_NEWUTS": lib.CLONE_NEWUTS,
    "CLONE_NEWIPC": lib.CLONE_NEWIPC,
    "CLONE_NEWUSER": lib.CLONE_NEWUSER,
    "CLONE_NEWPID": lib.CLONE_NEWPID,
    "CLONE_NEWNET": lib.CLONE_NEWNET,
    "CLONE_NEWCGROUP": lib.CLONE_NEWCGROUP,
}

MOUNT_FLAGS = {
    "MS_RDONLY": lib.MS_RDONLY,
    "MS_NOSUID": lib.MS_NOSUID,
    "MS_NODEV": lib.MS_NODEV,
    "MS_NOEXEC": lib.MS_NOEXEC,
    "MS_REMOUNT": lib.MS_REMOUNT,
    "MS_BIND": lib.MS_BIND,
    "MS_MOVE": lib.MS_MOVE,
    "MS_REC": lib.MS_REC,
    "MS_PRIVATE": lib.MS_PRIVATE,
    "MS_SLAVE": lib.MS_SLAVE,
    "MS_SHARED": lib.MS_SHARED,
    "MS_UNBINDABLE": lib.MS_UNBINDABLE,
}


# --- seccomp(2) through libseccomp: seccomp_init(3), seccomp_rule_add(3) ----
# libseccomp reports failure as a negative errno value in its return code,
# not as -1 with errno set, so these wrappers check ``ret < 0`` and use -ret.

def _check_scmp(ret: int, call: str, arg: object) -> int:
    if ret < 0:
        raise syscall_error(call, arg, -ret)
    return ret


def seccomp_version() -> str:
    """seccomp_version(3): the libseccomp in use, for error messages."""
    v = lib.seccomp_version()
    return f"{v.major}.{v.minor}.{v.micro}"


def seccomp_init(default_action: int, what: str):
    """seccomp_init(3): an empty filter context whose every syscall gets ``default_action``."""
    ctx = lib.seccomp_init(default_action)
    if ctx == ffi.NULL:
        # seccomp_init returns NULL and no error code; a bad action is the one cause
        raise syscall_error("seccomp_init", what, errno.EINVAL)
    return ctx


def seccomp_release(ctx) -> None:
    """seccomp_release(3): free the context (a loaded filter stays in the kernel)."""
    lib.seccomp_release(ctx)


def seccomp_attr_set(ctx, attr: int, value: int, what: str) -> None:
    """seccomp_attr_set(3): one filter attribute (``what`` names it in errors)."""
    _check_scmp(lib.seccomp_attr_set(ctx, attr, value), "seccomp_attr_set", f"{what}, {value}")


def seccomp_arch_resolve_name(name: str) -> int:
    """seccomp_arch_resolve_name(3): ``x86_64`` -> its AUDIT_ARCH token, 0 if unknown."""
    return lib.seccomp_arch_resolve_name(name.encode())


def seccomp_arch_add(ctx, token: int, name: str) -> None:
    """seccomp_arch_add(3): the filter also covers syscalls made with this ABI."""
    ret = lib.seccomp_arch_add(ctx, token)
    if ret != -errno.EEXIST:   # the native architecture is in every new filter already
        _check_scmp(ret, "seccomp_arch_add", name)


def seccomp_syscall_resolve_name(name: str) -> int | None:
    """seccomp_syscall_resolve_name(3): the syscall number, or None if libseccomp has no such name.

    Names that exist on another architecture only (``socketcall`` on
    x86_64) resolve to a negative pseudo-number that libseccomp maps per
    architecture when the rule is added.
    """
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    return None if nr == lib.__NR_SCMP_ERROR else nr


def seccomp_rule_add_array(ctx, action: int, syscall_nr: int,
                           comparisons: list[tuple[int, int, int, int]], what: str) -> None:
    """seccomp_rule_add_array(3): ``action`` for this syscall when all comparisons hold.

    Each comparison is ``(arg index, SCMP_CMP_* op, datum_a, datum_b)``.
    """
    arr = ffi.new("struct scmp_arg_cmp[]", max(len(comparisons), 1))
    for i, (index, op, datum_a, datum_b) in enumerate(comparisons):
        arr[i].arg, arr[i].op, arr[i].datum_a, arr[i].datum_b = index, op, datum_a, datum_b
    _check_scmp(lib.seccomp_rule_add_array(ctx, action, syscall_nr, len(comparisons), arr),
                "seccomp_rule_add_array", what)


def seccomp_load(ctx, what: str) -> None:
    """seccomp_load(3): compile the filter to BPF and install it with seccomp(2) on this thread."""
    _check_scmp(lib.seccomp_load(ctx), "seccomp_load", what)
