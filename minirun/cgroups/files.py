"""Reading and writing cgroup files: every interface of a cgroup is a small text file.

The kernel acts on each write(2) as a whole, so a value is written with one
call, and a refused value comes back as the errno of that call (EINVAL for a
value out of range, EBUSY for a limit below the current usage, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from minirun.libc import syscall_error


def write_file(path: str, value: str) -> None:
    """write(2) ``value`` to a cgroup file; errors read ``write(path, value): EINVAL (...)``.

    No O_CREAT: a file the kernel does not offer must fail with ENOENT, not
    appear as an ordinary file.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise syscall_error("open", path, e.errno) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise syscall_error("write", f"{path}, {value!r}", e.errno) from None
    finally:
        os.close(fd)


def read_file(path: str) -> str:
    """The whole file, without the trailing newline."""
    with open(path) as fh:
        return fh.read().rstrip("\n")


def read_int(path: str) -> int | None:
    """A number file; ``max`` (v2) and the v1 "unlimited" sentinels become None."""
    text = read_file(path)
    if text == "max" or text == "-1":
        return None
    value = int(text)
    # v1 shows "no limit" as PAGE_COUNTER_MAX pages in bytes, 2^63 rounded down to a page
    return None if value >= 1 << 62 else value


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file such as cpu.stat or memory.events: ``key value`` per line."""
    values = {}
    for line in read_file(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            values[key] = int(value)
        except ValueError:
            continue
    return values


def read_optional(path: str) -> str | None:
    """The file, or None where this kernel or controller does not have it."""
    try:
        return read_file(path)
    except FileNotFoundError:
        return None


def make_dir(path: str) -> bool:
    """mkdir(2) one cgroup; True if this call made it (the kernel fills it with files)."""
    try:
        os.mkdir(path, 0o755)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        raise    # the parent is missing: the caller makes it first
    except OSError as e:
        raise syscall_error("mkdir", path, e.errno) from None


def remove_dir(path: str) -> bool:
    """rmdir(2) one cgroup; False if it is already gone. EBUSY: processes or children remain."""
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise syscall_error("rmdir", path, e.errno) from None


def has_children(path: str) -> bool:
    """True if the cgroup has child cgroups (subdirectories): then it must stay."""
    try:
        with os.scandir(path) as entries:
            return any(entry.is_dir(follow_symlinks=False) for entry in entries)
    except FileNotFoundError:
        return False


def read_procs(path: str) -> list[int]:
    """cgroup.procs: the thread-group IDs in this one cgroup (not its children)."""
    try:
        return [int(line) for line in read_file(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


@dataclass
class Write:
    """One planned write: the OCI field it comes from, the cgroup file, the value.

    ``missing`` explains what it means when the kernel has no such file,
    ``refused`` the usual reason when it rejects the value.
    """
    where: str
    path: str
    value: str
    missing: str | None = None
    refused: str | None = None

    def __str__(self) -> str:
        return f"{self.path} <- {self.value!r}"
