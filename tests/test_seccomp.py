"""seccomp(2): parsing linux.seccomp, and filters the kernel really enforces.

A filter can never be removed, so every load happens in a forked child
that ends with os._exit.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal

import pytest

from minirun import libc
from minirun.errors import ConfigError, MinirunError
from minirun.seccomp import (
    ACTIONS,
    OPERATORS,
    SeccompArg,
    SeccompFilter,
    SeccompRule,
    load_seccomp,
    parse_seccomp,
)
from tests.forked import errno_name, in_child, run_in_child

ADDR_NO_RANDOMIZE = 0x0040000    # personality(2) flags
READ_IMPLIES_EXEC = 0x0400000
QUERY_PERSONALITY = 0xFFFFFFFF








def personality(value: int) -> str:
    """personality(2) through libc; ``"ok"`` or the errno name."""
    c = ctypes.CDLL(None, use_errno=True)
    c.personality.argtypes = [ctypes.c_ulong]
    if c.personality(value) == -1:
        return errno.errorcode[ctypes.get_errno()]
    return "ok"


def seccomp_status() -> dict[str, str]:
    with open("/proc/self/status") as fh:
        lines = [line.split(":", 1) for line in fh if ":" in line]
    return {k: v.strip() for k, v in lines if k in ("Seccomp", "Seccomp_filters", "NoNewPrivs")}


def allow_all_but(*rules: dict) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules)}


# --- parsing ---------------------------------------------------------------


def test_tables_match_the_libseccomp_headers():
    for name, value in OPERATORS.items():
        assert getattr(libc.lib, name) == value, name
    for name in ("KILL_PROCESS", "KILL_THREAD", "TRAP", "LOG", "ALLOW"):
        assert ACTIONS[f"SCMP_ACT_{name}"] == getattr(libc.lib, f"SCMP_ACT_{name}") & 0xFFFFFFFF


def test_parse_a_full_profile():
    filt = parse_seccomp({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 0xFF, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
        ]})
    assert filt == SeccompFilter(
        default_action="SCMP_ACT_ERRNO", default_errno=38,
        architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], flags=["SECCOMP_FILTER_FLAG_LOG"],
        syscalls=[SeccompRule(["read", "write"], "SCMP_ACT_ALLOW"),
                  SeccompRule(["personality"], "SCMP_ACT_ALLOW", None,
                              [SeccompArg(0, "SCMP_CMP_EQ", 8),
                               SeccompArg(0, "SCMP_CMP_MASKED_EQ", 0xFF, 8)])])
    assert parse_seccomp(None) is None


@pytest.mark.parametrize("obj, where, words", [
    ({}, "linux.seccomp.defaultAction", "is required"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "linux.seccomp.defaultAction", "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
     "linux.seccomp.defaultErrnoRet", "not SCMP_ACT_ALLOW"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000},
     "linux.seccomp.defaultErrnoRet", "between 0 and 4095"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
     "linux.seccomp.architectures[1]", 'unknown architecture "SCMP_ARCH_Z80"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]},
     "linux.seccomp.flags[0]", "unknown flag"),
    (allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                   {"names": ["rmdir"], "action": "SCMP_ACT_DENY"}),
     "linux.seccomp.syscalls[1].action", 'unknown action "SCMP_ACT_DENY"'),
    (allow_all_but({"names": "mkdir", "action": "SCMP_ACT_ERRNO"}),
     "linux.seccomp.syscalls[0].names", "expected a list"),
    (allow_all_but({"names": [], "action": "SCMP_ACT_ERRNO"}),
     "linux.seccomp.syscalls[0].names", "at least one"),
    (allow_all_but({"names": ["mkdir"]}), "linux.seccomp.syscalls[0].action", "is required"),
    (allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}),
     "linux.seccomp.syscalls[0].errnoRet", "take a return code"),
    (allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}),
     "linux.seccomp.syscalls[0].args[0].op", 'unknown operator "SCMP_CMP_ALMOST"'),
    (allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].index", "between 0 and 5"),
    (allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].value", "unsigned 64-bit"),
    (allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].value", "is required"),
])
def test_parse_errors_name_the_json_path(obj, where, words):
    with pytest.raises(ConfigError) as info:
        parse_seccomp(obj)
    assert info.value.where == where
    assert words in str(info.value)


@pytest.mark.parametrize("obj, where", [
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction"),
    (allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
     "linux.seccomp.syscalls[0].action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"},
     "linux.seccomp.listenerPath"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"},
     "linux.seccomp.listenerMetadata"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]},
     "linux.seccomp.flags[0]"),
])
def test_notify_is_refused_by_name(obj, where):
    with pytest.raises(ConfigError) as info:
        parse_seccomp(obj)
    assert info.value.where == where
    assert "not supported" in str(info.value)


# --- loading filters into the kernel ---------------------------------------


def test_mkdir_fails_with_eperm_and_other_calls_work(tmp_path):
    filt = parse_seccomp(allow_all_but(
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}))

    def work():
        load_seccomp(filt)
        dir_fd = os.open(tmp_path, os.O_DIRECTORY)
        with open(tmp_path / "file", "w") as fh:
            fh.write("written under the filter")
        return {"mkdir": errno_name(lambda: os.mkdir(tmp_path / "blocked")),
                # the filter names syscalls, not libc functions: mkdirat(2) is another one
                "mkdirat": errno_name(lambda: os.mkdir("via-mkdirat", dir_fd=dir_fd)),
                "status": seccomp_status()}

    result = in_child(work)
    assert result["mkdir"] == "EPERM" and not (tmp_path / "blocked").exists()
    assert result["mkdirat"] == "ok" and (tmp_path / "via-mkdirat").is_dir()
    assert (tmp_path / "file").read_text() == "written under the filter"
    # mode 2 is SECCOMP_MODE_FILTER; no_new_privs stays off, as the config did not ask
    assert result["status"] == {"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "0"}


def test_argument_filter_blocks_one_value_only():
    filt = parse_seccomp(allow_all_but(
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": ADDR_NO_RANDOMIZE, "op": "SCMP_CMP_EQ"}]}))

    def work():
        load_seccomp(filt)
        return [personality(v) for v in (QUERY_PERSONALITY, ADDR_NO_RANDOMIZE, 0)]

    assert in_child(work) == ["ok", "EACCES", "ok"]


def test_one_argument_listed_twice_means_any_of_the_values():
    filt = parse_seccomp(allow_all_but(
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": ADDR_NO_RANDOMIZE, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": READ_IMPLIES_EXEC, "op": "SCMP_CMP_EQ"}]}))

    def work():
        load_seccomp(filt)
        return [personality(v) for v in (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, 0)]

    assert in_child(work) == ["EPERM", "EPERM", "ok"]


def test_masked_equal_looks_at_the_masked_bits():
    filt = parse_seccomp(allow_all_but(
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": ADDR_NO_RANDOMIZE, "valueTwo": ADDR_NO_RANDOMIZE,
                   "op": "SCMP_CMP_MASKED_EQ"}]}))

    def work():
        load_seccomp(filt)
        return [personality(v) for v in
                (ADDR_NO_RANDOMIZE, ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC, READ_IMPLIES_EXEC, 0)]

    assert in_child(work) == ["EPERM", "EPERM", "ok", "ok"]


def test_default_errno_with_an_allow_list(tmp_path):
    # what this Python child needs between load and exit: write the answer, exit,
    # and memory for the objects it makes on the way
    needed = ["write", "exit_group", "brk", "mmap", "munmap", "mremap"]
    filt = parse_seccomp({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
                          "syscalls": [{"names": needed, "action": "SCMP_ACT_ALLOW"}]})

    def work():
        load_seccomp(filt)
        return {"mkdir": errno_name(lambda: os.mkdir(tmp_path / "blocked")),
                "uname": errno_name(os.uname),
                "open": errno_name(lambda: os.open("/proc/self/status", os.O_RDONLY))}

    # the answer arriving at all shows that write(2) went through
    assert in_child(work) == {"mkdir": "EACCES", "uname": "EACCES", "open": "EACCES"}
    assert not (tmp_path / "blocked").exists()


def test_kill_process_ends_the_child_with_sigsys():
    filt = parse_seccomp(allow_all_but({"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}))

    def work():
        load_seccomp(filt)
        os.getppid()
        return "still alive"

    code, result = run_in_child(work)
    assert code == -signal.SIGSYS and result is None


def test_unknown_and_foreign_syscall_names_are_skipped():
    # "socketcall" exists on 32-bit x86 only; the last name exists nowhere
    filt = parse_seccomp({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["socketcall", "getcwd", "no_such_syscall"],
                      "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
                     # the default action again: changes nothing, so it is skipped
                     {"names": ["getcwd"], "action": "SCMP_ACT_ALLOW"}]})

    def work():
        load_seccomp(filt)
        return errno_name(os.getcwd)

    assert in_child(work) == "EROFS"


def test_flags_are_accepted_by_the_kernel():
    filt = parse_seccomp({"defaultAction": "SCMP_ACT_ALLOW",
                          "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                          "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]})

    def work():
        load_seccomp(filt)
        load_seccomp(filt)    # filters stack; both run on every syscall
        return {"getcwd": errno_name(os.getcwd), "status": seccomp_status()}

    assert in_child(work) == {"getcwd": "EPERM", "status": {
        "Seccomp": "2", "Seccomp_filters": "2", "NoNewPrivs": "0"}}


def test_without_no_new_privs_loading_needs_cap_sys_admin():
    filt = parse_seccomp(allow_all_but({"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}))

    def work(set_no_new_privs: bool):
        libc.capset(0, 0, 0)          # still UID 0, but no capabilities at all
        if set_no_new_privs:
            libc.prctl(libc.lib.PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
        try:
            load_seccomp(filt)
        except MinirunError as e:
            return str(e)
        return {"getcwd": errno_name(os.getcwd), "status": seccomp_status()}

    message = in_child(lambda: work(False))
    assert "seccomp_load" in message and "EACCES" in message and "CAP_SYS_ADMIN" in message
    assert in_child(lambda: work(True)) == {"getcwd": "EPERM", "status": {
        "Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "1"}}
