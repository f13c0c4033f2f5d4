"""Mount entries of config.json and their options, as mount(2) flags.

``options: ["nosuid", "noexec", "mode=755"]`` becomes flags for mount(2)
plus a data string (``mode=755``) that the filesystem itself reads. The
table is the one in mount(8); propagation options (``rslave`` ...) are kept
apart because the kernel applies them with a separate mount(2) call.
"""

from __future__ import annotations

from dataclasses import dataclass

from minirun.config import fields as f
from minirun.errors import ConfigError
from minirun.libc import lib

# option -> (flag, True to set it / False to clear it)
MOUNT_OPTIONS = {
    "ro": (lib.MS_RDONLY, True), "rw": (lib.MS_RDONLY, False),
    "nosuid": (lib.MS_NOSUID, True), "suid": (lib.MS_NOSUID, False),
    "nodev": (lib.MS_NODEV, True), "dev": (lib.MS_NODEV, False),
    "noexec": (lib.MS_NOEXEC, True), "exec": (lib.MS_NOEXEC, False),
    "sync": (lib.MS_SYNCHRONOUS, True), "async": (lib.MS_SYNCHRONOUS, False),
    "dirsync": (lib.MS_DIRSYNC, True),
    "mand": (lib.MS_MANDLOCK, True), "nomand": (lib.MS_MANDLOCK, False),
    "noatime": (lib.MS_NOATIME, True), "atime": (lib.MS_NOATIME, False),
    "nodiratime": (lib.MS_NODIRATIME, True), "diratime": (lib.MS_NODIRATIME, False),
    "relatime": (lib.MS_RELATIME, True), "norelatime": (lib.MS_RELATIME, False),
    "strictatime": (lib.MS_STRICTATIME, True), "nostrictatime": (lib.MS_STRICTATIME, False),
    "bind": (lib.MS_BIND, True), "rbind": (lib.MS_BIND | lib.MS_REC, True),
    "remount": (lib.MS_REMOUNT, True),
    "defaults": (0, True),
}

PROPAGATION = {
    "private": lib.MS_PRIVATE, "rprivate": lib.MS_PRIVATE | lib.MS_REC,
    "shared": lib.MS_SHARED, "rshared": lib.MS_SHARED | lib.MS_REC,
    "slave": lib.MS_SLAVE, "rslave": lib.MS_SLAVE | lib.MS_REC,
    "unbindable": lib.MS_UNBINDABLE, "runbindable": lib.MS_UNBINDABLE | lib.MS_REC,
}

UNSUPPORTED_OPTIONS = {"tmpcopyup": "copy-up into tmpfs", "idmap": "ID-mapped mounts",
                       "ridmap": "ID-mapped mounts", "copy-symlink": "symlink copies"}

SUPPORTED_TYPES = ("proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
                   "bind", "none", "")


@dataclass
class Mount:
    destination: str
    type: str
    source: str
    flags: int = 0
    propagation: list[int] | None = None
    data: str = ""

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & lib.MS_BIND)


def parse_propagation(value: str, where: str) -> int:
    if value not in PROPAGATION:
        raise ConfigError(where, f"unknown propagation {f.describe(value)} "
                          f"(known: {', '.join(PROPAGATION)})")
    return PROPAGATION[value]


def parse_mount(obj: dict, where: str) -> Mount:
    destination = f.field(obj, "destination", str, where, required=True)
    if not destination.startswith("/"):
        raise ConfigError(f"{where}.destination", "must be an absolute path")
    fstype = f.field(obj, "type", str, where, default="")
    source = f.field(obj, "source", str, where, default="")
    f.refuse_unsupported(obj, {"uidMappings": "ID-mapped mounts",
                               "gidMappings": "ID-mapped mounts"}, where)
    mount = Mount(destination, fstype, source, propagation=[])
    data = []
    for i, option in enumerate(f.str_list(obj, "options", where)):
        if option in MOUNT_OPTIONS:
            flag, setting = MOUNT_OPTIONS[option]
            mount.flags = mount.flags | flag if setting else mount.flags & ~flag
        elif option in PROPAGATION:
            mount.propagation.append(PROPAGATION[option])
        elif option in UNSUPPORTED_OPTIONS:
            raise ConfigError(f"{where}.options[{i}]", f"{option!r} is not supported by minirun "
                              f"(no {UNSUPPORTED_OPTIONS[option]})")
        else:
            data.append(option)   # filesystem-specific: mode=755, size=64k, newinstance
    mount.data = ",".join(data)
    if fstype == "bind":
        mount.flags |= lib.MS_BIND
    if fstype not in SUPPORTED_TYPES and not mount.is_bind:
        raise ConfigError(f"{where}.type", f"mount type {fstype!r} is not supported by minirun "
                          f"(supported: {', '.join(t for t in SUPPORTED_TYPES if t)})")
    if mount.is_bind and not source:
        raise ConfigError(f"{where}.source", "a bind mount needs a source")
    return mount
