"""Isolation that must hold, each checked on a real container."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from minirun import libc
from minirun.libc import lib

BUNDLE_MOUNTS = json.loads((Path(__file__).resolve().parents[2] / "bundles" / "busybox" /
                            "config.json").read_text())["mounts"]


# enough to change the hostname and mount filesystems inside
ALL_ADMIN = {k: ["CAP_SYS_ADMIN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}


def test_pid_one_sees_only_its_own_processes(minirun, make_bundle):
    out = minirun("run", "-b", str(make_bundle(
        args=["/bin/sh", "-c", "echo $$; readlink /proc/1/exe; ls /proc | grep -c '^[0-9]'"])),
        "pid1").stdout.split()
    assert out[0] == "1"
    assert out[1] == "/bin/busybox"      # the bundle's program, seen from inside
    assert int(out[2]) <= 3              # sh, and the ls/grep of the pipeline


def test_hostname_is_private(minirun, make_bundle):
    host = socket.gethostname()
    out = minirun("run", "-b", str(make_bundle(
        args=["/bin/sh", "-c", "hostname; hostname changed-inside; hostname"],
        hostname="boxname", **{"process.capabilities": ALL_ADMIN})), "uts").stdout.split()
    assert out == ["boxname", "changed-inside"]
    assert socket.gethostname() == host


def test_mounts_made_inside_stay_inside(minirun, make_bundle):
    out = minirun("run", "-b", str(make_bundle(
        args=["/bin/sh", "-c", "mount -t tmpfs inside-only /tmp && grep -c inside-only "
              "/proc/self/mountinfo"], **{"process.capabilities": ALL_ADMIN})), "mnt").stdout
    assert out.strip() == "1"
    assert "inside-only" not in Path("/proc/self/mountinfo").read_text()


def test_host_mounts_are_not_visible(minirun, make_bundle):
    out = minirun("run", "-b", str(make_bundle(args=["/bin/cat", "/proc/self/mountinfo"])),
                  "mnt2").stdout
    mount_points = [line.split()[4] for line in out.splitlines()]
    assert mount_points[0] == "/"
    assert not [m for m in mount_points if m.startswith(("/work", "/tmp/", "/run/minirun"))]


def test_ipc_objects_are_private(minirun, make_bundle, tmp_path: Path):
    """POSIX message queues live in the IPC namespace; the mqueue fs lists them."""
    host_mq = tmp_path / "mq"
    host_mq.mkdir()
    libc.mount("mqueue", str(host_mq), "mqueue", 0)
    try:
        (host_mq / "from-host").touch()
        out = minirun("run", "-b", str(make_bundle(
            args=["/bin/sh", "-c", "touch /dev/mqueue/from-container; ls /dev/mqueue"])),
            "ipc").stdout.split()
        assert out == ["from-container"]
        assert sorted(os.listdir(host_mq)) == ["from-host"]
    finally:
        os.unlink(host_mq / "from-host")
        libc.umount2(str(host_mq))


def test_new_network_namespace_has_only_lo(minirun, make_bundle):
    out = minirun("run", "-b", str(make_bundle(args=["/bin/ls", "/sys/class/net"])), "net")
    assert out.stdout.split() == ["lo"]


def test_no_file_descriptor_leaks(make_bundle, state_root):
    """minirun's own fds (here 3 and 7, opened by the shell that starts it) stay out,
    except the ones --preserve-fds passes on."""
    bundle = make_bundle(args=["/bin/sh", "-c", "ls /proc/$$/fd; exit"])
    for preserve, expected in ((0, ["0", "1", "2"]), (1, ["0", "1", "2", "3"])):
        command = (f"exec 3</dev/null 7</dev/null; exec {sys.executable} -m minirun --root "
                   f"{state_root} run --preserve-fds {preserve} -b {bundle} fd{preserve}")
        result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                                timeout=30)
        # the shell's own fds (PID 1 here); busybox sh may keep one of its own at 10 and up
        fds = [fd for fd in result.stdout.split() if int(fd) < 10]
        assert fds == expected, result.stderr


def test_symlinked_mount_destination_stays_in_rootfs(minirun, make_bundle, copy_rootfs,
                                                     tmp_path: Path):
    rootfs = copy_rootfs()
    (rootfs / "rel-escape").symlink_to("../../../../../../etc")
    (rootfs / "abs-escape").symlink_to("/etc")
    source = tmp_path / "source"
    source.mkdir()
    (source / "marker").write_text("x")
    mounts = BUNDLE_MOUNTS + [
        {"destination": "/rel-escape/minirun-test-rel", "type": "bind", "source": str(source),
         "options": ["rbind"]},
        {"destination": "/abs-escape/minirun-test-abs", "type": "bind", "source": str(source),
         "options": ["rbind"]}]
    out = minirun("run", "-b", str(make_bundle(
        args=["/bin/sh", "-c", "ls /etc/minirun-test-rel /etc/minirun-test-abs"],
        rootfs=rootfs, mounts=mounts)), "sym").stdout
    assert out.count("marker") == 2
    assert not os.path.exists("/etc/minirun-test-rel")
    assert not os.path.exists("/etc/minirun-test-abs")
    assert (rootfs / "etc" / "minirun-test-rel").is_dir()   # made inside the rootfs


def test_masked_and_readonly_paths(minirun, make_bundle):
    # both are in the bundle's maskedPaths and hold something on the host
    assert Path("/proc/timer_list").read_text() and os.listdir("/sys/firmware")
    script = ("wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
              "echo x 2>/dev/null > /proc/sys/kernel/domainname && echo writable || echo refused")
    out = minirun("run", "-b", str(make_bundle(args=["/bin/sh", "-c", script])), "mask")
    assert out.stdout.split() == ["0", "0", "refused"]


def test_readonly_root(minirun, make_bundle):
    out = minirun("run", "-b", str(make_bundle(
        args=["/bin/sh", "-c", "touch /newfile 2>&1 || echo refused"])), "ro").stdout
    assert "Read-only file system" in out


def test_capabilities_are_dropped(minirun, make_bundle):
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle = make_bundle(
        args=["/bin/sh", "-c", "grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status; "
              "hostname nope 2>/dev/null && echo hostname-changed || echo hostname-refused"],
        **{"process.capabilities": {k: caps for k in
                                    ("bounding", "effective", "permitted", "ambient")},
           "process.noNewPrivileges": True})
    out = minirun("run", "-b", str(bundle), "caps").stdout
    fields = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    expected = (1 << 5) | (1 << 10)      # CAP_KILL, CAP_NET_BIND_SERVICE
    assert int(fields["CapEff"], 16) == expected
    assert int(fields["CapBnd"], 16) == expected
    assert fields["NoNewPrivs"].strip() == "1"
    assert "hostname-refused" in out     # CAP_SYS_ADMIN is really gone


def test_user_and_groups(minirun, make_bundle):
    bundle = make_bundle(args=["id"],
                         **{"process.user": {"uid": 1000, "gid": 1000,
                                             "additionalGids": [5, 100]}})
    out = minirun("run", "-b", str(bundle), "user").stdout
    assert "uid=1000" in out and "gid=1000" in out and "5" in out and "100" in out


def test_user_namespace_maps_root(minirun, make_bundle):
    mounts = [m for m in BUNDLE_MOUNTS if m["type"] not in ("cgroup", "sysfs")]
    bundle = make_bundle(args=["/bin/sh", "-c", "id -u; cat /proc/self/uid_map"],
                         mounts=mounts,
                         **{"linux.namespaces": [{"type": t} for t in
                                                 ("pid", "ipc", "uts", "mount", "user",
                                                  "network")],
                            "linux.uidMappings": [{"containerID": 0, "hostID": 200000,
                                                   "size": 65536}],
                            "linux.gidMappings": [{"containerID": 0, "hostID": 200000,
                                                   "size": 65536}]})
    out = minirun("run", "-b", str(bundle), "userns").stdout.split()
    assert out[0] == "0"
    assert out[1:4] == ["0", "200000", "65536"]


def test_join_namespaces_by_path(minirun, make_bundle):
    minirun("run", "-d", "-b", str(make_bundle(args=["/bin/sleep", "30"], hostname="shared-uts")),
            "holder")
    pid = json.loads(minirun("state", "holder").stdout)["pid"]
    joined = make_bundle(
        args=["/bin/sh", "-c", "hostname; ls /sys/class/net"],
        **{"linux.namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
                                {"type": "network", "path": f"/proc/{pid}/ns/net"}],
           "hostname": None})
    out = minirun("run", "-b", str(joined), "joiner").stdout.split()
    assert out[0] == "shared-uts"
    minirun("delete", "-f", "holder")


def test_clone_flags_named_in_errors():
    assert libc.describe_clone_flags(lib.CLONE_NEWPID | lib.CLONE_NEWNS) in (
        "CLONE_NEWNS|CLONE_NEWPID", "CLONE_NEWPID|CLONE_NEWNS")


@pytest.mark.parametrize("no_new_privs", [True, False], ids=["nnp", "no-nnp"])
def test_seccomp_filter_applies(minirun, make_bundle, no_new_privs):
    """mkdir(2) -> EPERM; with and without no_new_privs (then loaded while still root)."""
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 1}]}
    bundle = make_bundle(
        args=["/bin/sh", "-c", "grep Seccomp: /proc/self/status; mkdir /dev/shm/x 2>&1; "
              "echo > /dev/shm/file && echo write-ok"],
        **{"linux.seccomp": seccomp, "process.noNewPrivileges": no_new_privs})
    out = minirun("run", "-b", str(bundle), "sc").stdout
    assert "Seccomp:\t2" in out
    assert "Operation not permitted" in out and "write-ok" in out


def test_sysctl_is_set_inside_only(minirun, make_bundle):
    host = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    wanted = "0" if host == "1" else "1"
    bundle = make_bundle(args=["/bin/cat", "/proc/sys/net/ipv4/ip_forward"],
                         **{"linux.sysctl": {"net.ipv4.ip_forward": wanted}})
    assert minirun("run", "-b", str(bundle), "sysctl").stdout.strip() == wanted
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == host


def test_extra_device_node(minirun, make_bundle):
    """linux.devices: a node made with mknod(2) (here another name for /dev/null, 1:3)."""
    bundle = make_bundle(
        args=["/bin/sh", "-c", "ls -l /dev/minirun-null; echo hi > /dev/minirun-null && echo ok"],
        **{"linux.devices": [{"path": "/dev/minirun-null", "type": "c", "major": 1,
                              "minor": 3, "fileMode": 0o620, "uid": 0, "gid": 5}]})
    out = minirun("run", "-b", str(bundle), "dev").stdout
    assert out.startswith("crw--w----") and "1,   3" in out and "ok" in out
