"""capabilities(7): parsing process.capabilities, and dropping capabilities for real.

Every test that changes capabilities does it in a forked child, which ends
with os._exit, so the pytest process keeps its own sets.
"""

from __future__ import annotations

import os
import re
import socket

import pytest

from minirun import libc
from minirun.capabilities import (
    CAPABILITIES,
    CapabilitySets,
    apply_capabilities,
    drop_bounding_set,
    keep_capabilities_across_setuid,
    kernel_last_cap,
    names,
    parse_capabilities,
    read_capabilities,
)
from minirun.errors import ConfigError
from minirun.libc import lib
from tests.forked import errno_name, in_child

KILL_AND_BIND = (1 << CAPABILITIES["CAP_KILL"]) | (1 << CAPABILITIES["CAP_NET_BIND_SERVICE"])
UNUSED_UID = 4242     # no file on this machine belongs to it
BUSYBOX = "/bin/busybox"




def only(mask: int) -> CapabilitySets:
    return CapabilitySets(bounding=mask, effective=mask, inheritable=mask, permitted=mask,
                          ambient=mask)




def bind_port_80() -> None:
    # port 80 is below net.ipv4.ip_unprivileged_port_start (1024 in a new netns)
    with socket.socket() as s:
        s.bind(("0.0.0.0", 80))


# --- parsing ---------------------------------------------------------------


def test_table_matches_the_kernel_headers():
    header = "/usr/include/linux/capability.h"
    if not os.path.exists(header):
        pytest.skip(f"{header} is missing (Debian package linux-libc-dev)")
    with open(header) as fh:
        defined = dict(re.findall(r"^#define (CAP_[A-Z_]+)\s+(\d+)\s*$", fh.read(), re.M))
    assert {k: int(v) for k, v in defined.items() if k != "CAP_LAST_CAP"} == CAPABILITIES
    assert max(CAPABILITIES.values()) >= kernel_last_cap()


def test_parse_turns_names_into_masks():
    caps = parse_capabilities({"bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                               "effective": ["CAP_KILL"], "ambient": []})
    assert caps == CapabilitySets(bounding=KILL_AND_BIND, effective=1 << 5)
    assert names(caps.bounding) == ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert parse_capabilities(None) is None


@pytest.mark.parametrize("obj, where, words", [
    ({"bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SETUID", "CAP_FOO"]},
     "process.capabilities.bounding[3]", 'unknown capability "CAP_FOO"'),
    ({"ambient": ["cap_kill"]}, "process.capabilities.ambient[0]", 'did you mean "CAP_KILL"'),
    ({"effective": "CAP_KILL"}, "process.capabilities.effective", "expected a list"),
    ({"permitted": [5]}, "process.capabilities.permitted[0]", "expected a string"),
    ([], "process.capabilities", "expected an object"),
])
def test_parse_errors_name_the_json_path(obj, where, words):
    with pytest.raises(ConfigError) as info:
        parse_capabilities(obj)
    assert info.value.where == where
    assert words in str(info.value)


def test_parse_refuses_a_capability_the_kernel_does_not_know(monkeypatch):
    # as an older kernel (5.8) would report it: CAP_CHECKPOINT_RESTORE came in 5.9
    monkeypatch.setattr("minirun.capabilities.kernel_last_cap", lambda: 39)
    with pytest.raises(ConfigError) as info:
        parse_capabilities({"inheritable": ["CAP_CHECKPOINT_RESTORE"]}, "p.caps")
    assert info.value.where == "p.caps.inheritable[0]"
    assert '"CAP_CHECKPOINT_RESTORE"' in str(info.value) and "39" in str(info.value)


# --- applying them -----------------------------------------------------------


def test_root_keeps_only_kill_and_net_bind_service(tmp_path):
    victim = tmp_path / "owned-by-root"
    victim.write_text("")

    def work():
        # new namespaces first: unshare itself needs the CAP_SYS_ADMIN we drop
        libc.unshare(lib.CLONE_NEWUTS | lib.CLONE_NEWNET)
        drop_bounding_set(KILL_AND_BIND)
        apply_capabilities(only(KILL_AND_BIND))
        return {"sets": read_capabilities(),
                "chown": errno_name(lambda: os.chown(victim, UNUSED_UID, UNUSED_UID)),
                "sethostname": errno_name(lambda: libc.sethostname("dropped")),
                "bind80": errno_name(bind_port_80)}

    result = in_child(work)
    assert result["sets"] == {"CapInh": KILL_AND_BIND, "CapPrm": KILL_AND_BIND,
                              "CapEff": KILL_AND_BIND, "CapBnd": KILL_AND_BIND,
                              "CapAmb": KILL_AND_BIND}
    assert result["chown"] == "EPERM"            # CAP_CHOWN is gone
    assert result["sethostname"] == "EPERM"      # CAP_SYS_ADMIN is gone
    assert result["bind80"] == "ok"              # CAP_NET_BIND_SERVICE stayed
    assert victim.stat().st_uid == 0


def test_kept_capabilities_work_and_the_others_do_not(tmp_path):
    """The mirror image: keep CAP_CHOWN and CAP_SYS_ADMIN, lose CAP_NET_BIND_SERVICE."""
    victim = tmp_path / "given-away"
    victim.write_text("")
    keep = (1 << CAPABILITIES["CAP_CHOWN"]) | (1 << CAPABILITIES["CAP_SYS_ADMIN"])

    def work():
        libc.unshare(lib.CLONE_NEWUTS | lib.CLONE_NEWNET)
        drop_bounding_set(keep)
        apply_capabilities(only(keep))
        return {"chown": errno_name(lambda: os.chown(victim, UNUSED_UID, UNUSED_UID)),
                "sethostname": errno_name(lambda: libc.sethostname("kept")),
                "bind80": errno_name(bind_port_80)}

    assert in_child(work) == {"chown": "ok", "sethostname": "ok", "bind80": "EACCES"}
    assert victim.stat().st_uid == UNUSED_UID


def test_read_capabilities_of_another_process():
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            drop_bounding_set(KILL_AND_BIND)
            apply_capabilities(only(KILL_AND_BIND))
            os.write(ready_w, b"x")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        assert read_capabilities(pid) == {key: KILL_AND_BIND for key in
                                          ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason=f"{BUSYBOX} missing (busybox-static)")
@pytest.mark.parametrize("ambient", [KILL_AND_BIND, 0], ids=["ambient", "no-ambient"])
def test_non_root_user_keeps_ambient_capabilities_across_execve(ambient):
    """Only the ambient set carries capabilities into a plain program run by a non-root user."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            drop_bounding_set(KILL_AND_BIND)
            keep_capabilities_across_setuid()
            libc.setgroups([])
            libc.setresgid(UNUSED_UID)
            libc.setresuid(UNUSED_UID)
            caps = only(KILL_AND_BIND)
            caps.ambient = ambient
            apply_capabilities(caps)
            os.execv(BUSYBOX, ["cat", "/proc/self/status"])
        except BaseException as e:  # noqa: BLE001
            os.write(w, f"error: {e}\n".encode())
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r) as fh:
        status = fh.read()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0, status
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split() == [str(UNUSED_UID)] * 4
    assert int(fields["CapAmb"], 16) == ambient
    assert int(fields["CapEff"], 16) == ambient
    assert int(fields["CapPrm"], 16) == ambient
    assert int(fields["CapBnd"], 16) == KILL_AND_BIND


def test_without_keepcaps_setuid_loses_the_permitted_set():
    def work():
        drop_bounding_set(KILL_AND_BIND)
        libc.setresuid(UNUSED_UID)      # no PR_SET_KEEPCAPS: permitted is now empty
        before = read_capabilities()["CapPrm"]
        return {"permitted": before,
                "capset": errno_name(lambda: apply_capabilities(only(KILL_AND_BIND)))}

    assert in_child(work) == {"permitted": 0, "capset": "EPERM"}


def test_ambient_capability_outside_inheritable_is_left_out_as_runc_does():
    """``runc spec`` lists ambient caps but no inheritable set; the kernel cannot raise those."""
    def work():
        caps = only(KILL_AND_BIND)
        caps.inheritable = 1 << CAPABILITIES["CAP_KILL"]
        apply_capabilities(caps)
        return read_capabilities()

    sets = in_child(work)
    assert sets["CapAmb"] == sets["CapInh"] == 1 << CAPABILITIES["CAP_KILL"]
    assert sets["CapEff"] == sets["CapPrm"] == KILL_AND_BIND
