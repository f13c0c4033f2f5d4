"""Capabilities: root's power cut into 41 pieces (capabilities(7)).

A thread has five capability sets, each a bit mask with bit N for
capability N (``CAP_KILL`` is 5, so it is ``1 << 5``):

- bounding: the most this thread and its children can ever get back;
  dropped with prctl(PR_CAPBSET_DROP), never raised again.
- permitted: what the thread may put in its effective set.
- effective: what the kernel checks when the thread makes a syscall.
- inheritable: what may pass across execve(2) to a program with file caps.
- ambient: what passes across execve(2) to any program that is not setuid
  or has file caps, which is how a non-root user keeps CAP_NET_BIND_SERVICE.

The container's init applies a config's ``process.capabilities`` in the
order runc does: drop the bounding set while still root (it needs
CAP_SETPCAP), set PR_SET_KEEPCAPS, setresuid(2) to the container's user,
then capset(2) and raise the ambient caps. Every set missing from the
config is empty, so a capability nobody listed is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from minirun.config import fields as f
from minirun.errors import ConfigError

# Bit numbers from <linux/capability.h>. The running kernel may know fewer:
# /proc/sys/kernel/cap_last_cap is its highest.
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

SET_NAMES = ("bounding", "effective", "inheritable", "permitted", "ambient")

# The lines of /proc/PID/status (proc(5)) that hold the five sets, in hex.
STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@dataclass
class CapabilitySets:
    """The five sets as bit masks: bit N set means capability N is in the set."""
    bounding: int = 0
    effective: int = 0
    inheritable: int = 0
    permitted: int = 0
    ambient: int = 0


@cache
def kernel_last_cap() -> int:
    """The highest capability this kernel knows: /proc/sys/kernel/cap_last_cap."""
    with open("/proc/sys/kernel/cap_last_cap") as fh:
        return int(fh.read())


def names(mask: int) -> list[str]:
    """The capability names whose bits are set in ``mask``, lowest bit first."""
    return [name for name, bit in CAPABILITIES.items() if mask & (1 << bit)]


def parse_capabilities(obj: dict | None,
                       where: str = "process.capabilities") -> CapabilitySets | None:
    """OCI ``process.capabilities`` -> CapabilitySets; None when the config has none.

    Names must be spelled as the kernel headers do (``CAP_KILL``). A name
    this kernel does not know is refused rather than dropped quietly: a
    container that asked for a capability should not run without it.
    """
    if obj is None:
        return None
    f.check_type(obj, dict, where)
    sets = CapabilitySets()
    for set_name in SET_NAMES:
        mask = 0
        for i, name in enumerate(f.str_list(obj, set_name, where)):
            mask |= 1 << _capability_bit(name, f"{where}.{set_name}[{i}]")
        setattr(sets, set_name, mask)
    return sets


def _capability_bit(name: str, where: str) -> int:
    bit = CAPABILITIES.get(name)
    if bit is None:
        hint = ""
        for candidate in (name.upper(), "CAP_" + name.upper()):
            if candidate in CAPABILITIES:
                hint = f' (did you mean "{candidate}"?)'
        raise ConfigError(where, f'unknown capability "{name}"{hint}')
    if bit > kernel_last_cap():
        raise ConfigError(where, f'capability "{name}" (bit {bit}) is not known to this kernel '
                                 f"(/proc/sys/kernel/cap_last_cap is {kernel_last_cap()})")
    return bit


def drop_bounding_set(keep: int) -> None:
    """prctl(PR_CAPBSET_DROP) for every capability not in ``keep`` (prctl(2)).

    Needs CAP_SETPCAP in the effective set, so it comes before setresuid
    and capset. Once dropped, no execve of a setuid or file-caps program can
    bring a capability back.
    """
    from minirun import libc
    from minirun.libc import lib

    for name, bit in CAPABILITIES.items():
        if bit <= kernel_last_cap() and not keep & (1 << bit):
            libc.prctl(lib.PR_CAPBSET_DROP, bit, f"PR_CAPBSET_DROP, {name}")


def keep_capabilities_across_setuid() -> None:
    """prctl(PR_SET_KEEPCAPS, 1): setresuid(2) from root to a user keeps the permitted set.

    Without it the kernel clears permitted and effective when no UID stays
    0, and capset could not raise anything again. Effective is still
    cleared; apply_capabilities sets it. execve(2) resets the flag.
    """
    from minirun import libc
    from minirun.libc import lib

    libc.prctl(lib.PR_SET_KEEPCAPS, 1, "PR_SET_KEEPCAPS, 1")


def apply_capabilities(caps: CapabilitySets) -> None:
    """capset(2) the effective, permitted and inheritable sets, then raise the ambient ones.

    Runs after setresuid. capset may only lower permitted, and effective
    must be a subset of it. The kernel raises an ambient capability only if
    it is both permitted and inheritable (prctl(2), PR_CAP_AMBIENT_RAISE).
    ``runc spec`` itself writes ambient caps and no inheritable set, and
    runc leaves such caps out without a word, so minirun leaves them out too:
    they are in neither the config's inheritable set nor, after execve, the
    program's. Any other refusal is an error naming the capability.
    """
    from minirun import libc
    from minirun.libc import lib

    libc.capset(caps.effective, caps.permitted, caps.inheritable)
    libc.prctl_ambient(lib.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in names(caps.ambient & caps.inheritable & caps.permitted):
        try:
            libc.prctl_ambient(lib.PR_CAP_AMBIENT_RAISE, CAPABILITIES[name])
        except OSError as e:
            raise libc.syscall_error("prctl", f"PR_CAP_AMBIENT_RAISE, {name}", e.errno) from None


def read_capabilities(pid: int | str = "self") -> dict[str, int]:
    """The five sets of a process as the kernel reports them in /proc/PID/status (proc(5)).

    Keys are the status file's own: CapInh, CapPrm, CapEff, CapBnd, CapAmb.
    """
    sets = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in STATUS_FIELDS:
                sets[key] = int(value, 16)
    return sets
