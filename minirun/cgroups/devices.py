"""Device rules: which device nodes a container may open, read, write or mknod.

cgroup v1 has a ``devices`` controller with two files: a line written to
devices.deny or devices.allow (``c 1:3 rwm``) changes the cgroup's list, and
``a`` in devices.deny empties it (Documentation/admin-guide/cgroup-v1/devices.rst).
cgroup v2 has no such files: a BPF_PROG_TYPE_CGROUP_DEVICE program attached to
the cgroup decides instead. minirun does not load eBPF, so on v2 it accepts
only the default rules (which the container's own /dev already matches) and
refuses any other rule by name rather than pretend to enforce it.
"""

from __future__ import annotations

from minirun.config.resources import DeviceRule

# What runc allows on top of a bundle's rules (libcontainer/specconv AllowedDevices,
# without /dev/net/tun, which runc 1.2 dropped): mknod of anything, and the nodes
# every container's /dev holds.
DEFAULT_ALLOWED = (
    DeviceRule(True, "c", None, None, "m"),
    DeviceRule(True, "b", None, None, "m"),
    DeviceRule(True, "c", 1, 3, "rwm"),      # /dev/null
    DeviceRule(True, "c", 1, 8, "rwm"),      # /dev/random
    DeviceRule(True, "c", 1, 7, "rwm"),      # /dev/full
    DeviceRule(True, "c", 5, 0, "rwm"),      # /dev/tty
    DeviceRule(True, "c", 1, 5, "rwm"),      # /dev/zero
    DeviceRule(True, "c", 1, 9, "rwm"),      # /dev/urandom
    DeviceRule(True, "c", 136, None, "rwm"),  # /dev/pts/*
    DeviceRule(True, "c", 5, 2, "rwm"),      # /dev/ptmx
)
DENY_ALL = DeviceRule(False, "a", None, None, "rwm")
ALLOW_ALL = DeviceRule(True, "a", None, None, "rwm")


def v1_lines(rules: list[DeviceRule]) -> list[tuple[str, str]]:
    """(file, line) pairs for cgroup v1, in order: the bundle's rules, then runc's defaults."""
    return [("devices.allow" if r.allow else "devices.deny", str(r))
            for r in [*rules, *DEFAULT_ALLOWED]]


def first_non_default(rules: list[DeviceRule]) -> int | None:
    """Index of the first rule cgroup v2 would need eBPF for; None if all are defaults.

    The defaults are what ``runc spec`` writes (deny everything) and the allow
    rules for the standard nodes that containerd adds after it.
    """
    for i, rule in enumerate(rules):
        if i == 0 and _same(rule, DENY_ALL):
            continue
        if rule.allow and any(_same(rule, d) for d in (ALLOW_ALL, *DEFAULT_ALLOWED)):
            continue      # v2 without a program allows everything, so this holds anyway
        return i
    return None


def _same(a: DeviceRule, b: DeviceRule) -> bool:
    if a.type == "a" and b.type == "a":
        return a.allow == b.allow and set(a.access) == set(b.access)
    return (a.allow, a.type, a.major, a.minor) == (b.allow, b.type, b.major, b.minor) \
        and set(a.access) <= set(b.access)
