"""Seccomp: a BPF program the kernel runs on every syscall the container makes (seccomp(2)).

The filter looks at the syscall number, the architecture (the ABI the call
came through) and the six raw argument values, and answers with an action:
let it through, fail it with an errno, send SIGSYS, kill the thread or the
process, or wake a tracer. It cannot follow pointers, so it can block
``mkdir`` but not "mkdir under /etc".

minirun does not write the BPF itself. It hands the OCI ``linux.seccomp``
rules to libseccomp (seccomp_init(3), seccomp_rule_add(3), seccomp_load(3)),
which compiles them and installs the result with seccomp(2). A loaded filter
is inherited across fork and execve and can never be removed, only stacked.

Ordering matters in the init. Without no_new_privs, installing a filter
needs CAP_SYS_ADMIN (a filter could otherwise fool a setuid program into
misbehaving), so runc loads it before dropping capabilities when
``process.noNewPrivileges`` is false, and as late as possible, just before
execve, when it is true.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from minirun.config import fields as f
from minirun.errors import ConfigError, MinirunError

# OCI action names. The ones taking an errno (ERRNO) or a tracer message
# (TRACE) get it from errnoRet; the numbers are libseccomp's SCMP_ACT_*.
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,            # the old name of KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,            # SIGSYS to the thread
    "SCMP_ACT_ERRNO": 0x00050000,           # | errno
    "SCMP_ACT_TRACE": 0x7FF00000,           # | message for a ptrace(2) tracer
    "SCMP_ACT_LOG": 0x7FFC0000,             # allow, and log to the audit log
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
ACTIONS_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

# SCMP_CMP_* from <seccomp.h>: how an argument is compared with ``value``.
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,   # (arg & value) == valueTwo
}

# OCI architecture names -> libseccomp's names for seccomp_arch_resolve_name(3).
ARCHITECTURES: dict[str, str] = {
    f"SCMP_ARCH_{name.upper()}": name for name in (
        "x86", "x86_64", "x32", "arm", "aarch64", "mips", "mips64", "mips64n32", "mipsel",
        "mipsel64", "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "parisc",
        "parisc64", "riscv64", "loongarch64")
}

# OCI flags -> the libseccomp filter attribute (seccomp_attr_set(3)) that asks for them.
FLAGS: dict[str, str] = {
    "SECCOMP_FILTER_FLAG_TSYNC": "SCMP_FLTATR_CTL_TSYNC",     # every thread of the process
    "SECCOMP_FILTER_FLAG_LOG": "SCMP_FLTATR_CTL_LOG",         # log every action but ALLOW
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "SCMP_FLTATR_CTL_SSB",  # keep speculative store bypass
}

SYSCALL_ARGS = 6        # a syscall has at most six arguments: index 0 to 5
MAX_ERRNO = 4095        # the kernel clamps larger SCMP_ACT_ERRNO values to this
UINT64_MAX = 2**64 - 1


@dataclass
class SeccompArg:
    """One comparison of a syscall argument: ``args[index] op value``."""
    index: int
    op: str                 # "SCMP_CMP_EQ"
    value: int
    value_two: int = 0      # only SCMP_CMP_MASKED_EQ uses it: (arg & value) == value_two


@dataclass
class SeccompRule:
    """``action`` for every syscall in ``names`` when all ``args`` comparisons hold."""
    names: list[str]
    action: str             # "SCMP_ACT_ERRNO"
    errno_ret: int | None = None
    args: list[SeccompArg] = field(default_factory=list)


@dataclass
class SeccompFilter:
    default_action: str
    default_errno: int | None = None
    architectures: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    syscalls: list[SeccompRule] = field(default_factory=list)


def action_value(action: str, errno_ret: int | None) -> int:
    """The 32-bit SECCOMP_RET_* value of an action; ERRNO and TRACE default to EPERM as in runc."""
    value = ACTIONS[action]
    if action in ACTIONS_WITH_ERRNO:
        value |= (errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


def describe_action(action: str, errno_ret: int | None) -> str:
    if action in ACTIONS_WITH_ERRNO:
        return f"{action}({errno.EPERM if errno_ret is None else errno_ret})"
    return action


# --- parsing linux.seccomp ---------------------------------------------------

def parse_seccomp(obj: dict | None, where: str = "linux.seccomp") -> SeccompFilter | None:
    """OCI ``linux.seccomp`` -> SeccompFilter, every value checked; None when there is none."""
    if obj is None:
        return None
    f.check_type(obj, dict, where)
    # The notify action hands a syscall to a supervisor process over a
    # socket (seccomp_unotify(2)); minirun has no such supervisor.
    f.refuse_unsupported(obj, {
        "listenerPath": "SCMP_ACT_NOTIFY needs a seccomp agent",
        "listenerMetadata": "SCMP_ACT_NOTIFY needs a seccomp agent"}, where)
    default_action = _parse_action(obj, "defaultAction", where, required=True)
    filt = SeccompFilter(
        default_action=default_action,
        default_errno=_parse_errno(obj, "defaultErrnoRet", default_action, where))
    for i, arch in enumerate(f.str_list(obj, "architectures", where)):
        if arch not in ARCHITECTURES:
            raise ConfigError(f"{where}.architectures[{i}]", f'unknown architecture "{arch}"')
        filt.architectures.append(arch)
    for i, flag in enumerate(f.str_list(obj, "flags", where)):
        if flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
            raise ConfigError(f"{where}.flags[{i}]", f"{flag} is not supported by minirun "
                                                     "(it only matters with SCMP_ACT_NOTIFY)")
        if flag not in FLAGS:
            raise ConfigError(f"{where}.flags[{i}]", f'unknown flag "{flag}"')
        filt.flags.append(flag)
    filt.syscalls = [_parse_rule(rule, path) for path, rule in f.objects(obj, "syscalls", where)]
    return filt


def _parse_action(obj: dict, key: str, where: str, required: bool = False) -> str:
    action = f.field(obj, key, str, where, required=required)
    if action == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"{where}.{key}", "SCMP_ACT_NOTIFY is not supported by minirun "
                                            "(it needs a seccomp agent on listenerPath)")
    if action not in ACTIONS:
        raise ConfigError(f"{where}.{key}", f'unknown action "{action}"')
    return action


def _parse_errno(obj: dict, key: str, action: str, where: str) -> int | None:
    value = f.field(obj, key, int, where)
    if value is None:
        return None
    path = f"{where}.{key}"
    if action not in ACTIONS_WITH_ERRNO:
        raise ConfigError(path, f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take a return code, "
                                f"not {action}")
    limit = MAX_ERRNO if action == "SCMP_ACT_ERRNO" else 0xFFFF
    if not 0 <= value <= limit:
        raise ConfigError(path, f"must be between 0 and {limit}, got {value}")
    return value


def _parse_rule(obj: dict, where: str) -> SeccompRule:
    syscall_names = f.str_list(obj, "names", where)
    if not syscall_names:
        raise ConfigError(f"{where}.names", "must name at least one syscall")
    for i, name in enumerate(syscall_names):
        if not name:
            raise ConfigError(f"{where}.names[{i}]", "a syscall name cannot be empty")
    action = _parse_action(obj, "action", where, required=True)
    return SeccompRule(names=syscall_names, action=action,
                       errno_ret=_parse_errno(obj, "errnoRet", action, where),
                       args=[_parse_arg(arg, path) for path, arg in f.objects(obj, "args", where)])


def _parse_arg(obj: dict, where: str) -> SeccompArg:
    index = f.field(obj, "index", int, where, required=True)
    if not 0 <= index < SYSCALL_ARGS:
        raise ConfigError(f"{where}.index", f"must be between 0 and {SYSCALL_ARGS - 1}, "
                                            f"got {index}")
    op = f.field(obj, "op", str, where, required=True)
    if op not in OPERATORS:
        raise ConfigError(f"{where}.op", f'unknown operator "{op}"')
    values = []
    for key, required in (("value", True), ("valueTwo", False)):
        value = f.field(obj, key, int, where, default=0, required=required)
        if not 0 <= value <= UINT64_MAX:
            raise ConfigError(f"{where}.{key}", f"must be an unsigned 64-bit number, got {value}")
        values.append(value)
    return SeccompArg(index=index, op=op, value=values[0], value_two=values[1])


# --- loading it into the kernel ----------------------------------------------

def load_seccomp(filt: SeccompFilter) -> None:
    """Build the filter with libseccomp and install it on this thread (seccomp_load(3)).

    From here on every syscall of this process and of all it execs goes
    through the filter, including the ones the init still makes.
    """
    from minirun import libc
    from minirun.libc import lib

    default = action_value(filt.default_action, filt.default_errno)
    ctx = libc.seccomp_init(default, describe_action(filt.default_action, filt.default_errno))
    try:
        # no_new_privs is process.noNewPrivileges' business, set by the init
        # when asked. libseccomp would set it on every load by default, which
        # would stop setuid programs in every container that has a filter.
        libc.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_NNP, 0, "SCMP_FLTATR_CTL_NNP")
        # Report the kernel's errno from seccomp(2) (EACCES, EINVAL) rather
        # than libseccomp's catch-all ECANCELED.
        libc.seccomp_attr_set(ctx, lib.SCMP_FLTATR_API_SYSRAWRC, 1, "SCMP_FLTATR_API_SYSRAWRC")
        for arch in filt.architectures:
            token = libc.seccomp_arch_resolve_name(ARCHITECTURES[arch])
            if token == 0:
                raise MinirunError(f"linux.seccomp.architectures: libseccomp "
                                   f"{libc.seccomp_version()} does not know {arch}")
            libc.seccomp_arch_add(ctx, token, arch)
        for flag in filt.flags:
            attr = FLAGS[flag]
            libc.seccomp_attr_set(ctx, getattr(lib, attr), 1, attr)
        if sum(len(rule.names) for rule in filt.syscalls) > 256:
            # a binary tree of syscall numbers instead of a linear list: Docker's
            # default profile names about 350 syscalls, each checked in turn otherwise
            libc.seccomp_attr_set(ctx, lib.SCMP_FLTATR_CTL_OPTIMIZE, 2, "SCMP_FLTATR_CTL_OPTIMIZE")
        for rule in filt.syscalls:
            _add_rule(ctx, rule, default)
        try:
            libc.seccomp_load(ctx, f"{len(filt.syscalls)} rules")
        except OSError as e:
            if e.errno == errno.EACCES:
                raise MinirunError(f"{e}: without noNewPrivileges, loading a seccomp filter "
                                   "needs CAP_SYS_ADMIN, so it must come before the "
                                   "capabilities are dropped") from None
            raise
    finally:
        libc.seccomp_release(ctx)


def _add_rule(ctx, rule: SeccompRule, default: int) -> None:
    from minirun import libc

    action = action_value(rule.action, rule.errno_ret)
    if action == default:
        # libseccomp refuses a rule that repeats the default action; like runc,
        # skip it, since it changes nothing.
        return
    comparisons = [(a.index, OPERATORS[a.op], a.value, a.value_two) for a in rule.args]
    # One rule ANDs its comparisons, and libseccomp allows one comparison
    # per argument in it. Profiles such as Docker's list several values for
    # the same argument (personality 0, 8, 0x20000, ...) meaning "any of
    # these": as runc does, such a list becomes one rule per comparison (OR).
    indexes = [c[0] for c in comparisons]
    if len(set(indexes)) == len(indexes):
        groups = [comparisons]
    else:
        groups = [[c] for c in comparisons]
    for name in rule.names:
        nr = libc.seccomp_syscall_resolve_name(name)
        if nr is None:
            # Unknown to libseccomp (a newer syscall, a typo): skipped, as runc
            # does, so one profile serves many kernels and libseccomp versions.
            continue
        for group in groups:
            libc.seccomp_rule_add_array(ctx, action, nr, group,
                                        f"{name}, {describe_action(rule.action, rule.errno_ret)}")
