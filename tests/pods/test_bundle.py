"""Pod -> OCI config.json: namespaces joined by path, the process by Kubernetes' rules,
capabilities as containerd gives them, mounts and volumes; every config is fed to
minirun's own OCI parser. The volume tests make real tmpfs mounts and check that
remove_volumes takes them all back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minirun.capabilities import CAPABILITIES
from minirun.config.oci import parse_config
from minirun.config.pod import parse_pod
from minirun.errors import MinirunError
from minirun.pod import bundle
from minirun.pod.images import Image

OWN = os.getpid()     # a PID whose /proc/PID/ns files exist, standing in for the pause


@pytest.fixture
def image(tmp_path) -> Image:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                           "student:x:1000:1000::/home:/bin/sh\n"
                                           "www:x:33:44::/var/www:/bin/sh\n")
    return Image(name="busybox", rootfs=str(rootfs), default_args=["/bin/sh", "-c", "echo hi"],
                 default_env=["PATH=/bin", "TERM=xterm"], default_cwd="/", tmpfs=["/run"])


def make_pod(container: dict | None = None, **spec):
    c = {"name": "app", "image": "busybox", **(container or {})}
    return parse_pod({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "web", "namespace": "lab", "uid": "u-1"},
                      "spec": {"containers": [c], **spec}})


def config_for(pod, image, volumes_dir="/tmp/vols"):
    return bundle.container_config(pod, pod.container("app"), image, sandbox_pid=OWN,
                                   cgroups_path="kubepods/podu-1/app",
                                   resources={"cpu": {"shares": 2}}, oom_score_adj=1000,
                                   volumes_dir=volumes_dir)


def namespaces(config) -> dict:
    return {ns["type"]: ns.get("path") for ns in config["linux"]["namespaces"]}


# --- namespaces ---------------------------------------------------------------

def test_containers_join_the_sandboxs_namespaces(image):
    ns = namespaces(config_for(make_pod(), image))
    assert ns == {"network": f"/proc/{OWN}/ns/net", "uts": f"/proc/{OWN}/ns/uts",
                  "ipc": f"/proc/{OWN}/ns/ipc", "pid": None, "mount": None, "cgroup": None}


def test_shared_process_namespace_joins_the_pid_namespace(image):
    ns = namespaces(config_for(make_pod(shareProcessNamespace=True), image))
    assert ns["pid"] == f"/proc/{OWN}/ns/pid"


@pytest.mark.parametrize("flag, gone", [("hostNetwork", {"network", "uts"}),
                                        ("hostIPC", {"ipc"}), ("hostPID", {"pid"})])
def test_host_namespaces_are_left_out(image, flag, gone):
    pod = make_pod(**{flag: True})
    assert set(namespaces(config_for(pod, image))) == \
        {"network", "uts", "ipc", "pid", "mount", "cgroup"} - gone
    sandbox = bundle.sandbox_config(pod, cgroups_path="x", resources={}, pause_args=["/p"])
    assert set(namespaces(sandbox)) == {"network", "uts", "ipc", "pid", "mount", "cgroup"} - gone


def test_sandbox_has_new_namespaces_and_the_pods_hostname():
    pod = make_pod()
    config = bundle.sandbox_config(pod, cgroups_path="kubepods/podu-1/_pause",
                                   resources={"cpu": {"shares": 2}}, pause_args=["/p"])
    assert all(path is None for path in namespaces(config).values())
    assert config["hostname"] == "web"
    assert config["process"]["oomScoreAdj"] == -998
    assert config["process"]["user"] == {"uid": 65535, "gid": 65535}
    assert config["process"]["capabilities"]["bounding"] == []
    assert config["annotations"]["io.kubernetes.cri.container-type"] == "sandbox"
    assert config["annotations"]["io.kubernetes.cri.sandbox-uid"] == "u-1"
    host = make_pod(hostname="box", hostNetwork=True)
    assert "hostname" not in bundle.sandbox_config(host, cgroups_path="x", resources={},
                                                   pause_args=["/p"])
    assert bundle.sandbox_config(make_pod(hostname="box"), cgroups_path="x", resources={},
                                 pause_args=["/p"])["hostname"] == "box"


def test_sandbox_network_and_host_ports():
    pod = make_pod({"ports": [{"containerPort": 80, "hostPort": 8080},
                              {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                              {"containerPort": 9000}]})
    config = bundle.sandbox_config(pod, cgroups_path="x", resources={}, pause_args=["/p"],
                                   network="default")
    assert config["annotations"]["org.minirun.network"] == "default"
    assert config["annotations"]["org.minirun.ports"] == "8080:80/tcp,5353:53/udp"


def test_sandbox_with_its_own_rootfs_binds_the_static_pause(tmp_path):
    rootfs = bundle.make_pause_rootfs(str(tmp_path / "pause-root"))
    assert sorted(os.listdir(rootfs)) == ["dev", "pause", "proc"]
    config = bundle.sandbox_config(make_pod(), cgroups_path="x", resources={},
                                   pause_args=["/opt/minirun-pause", "-v"], rootfs=rootfs)
    assert config["process"]["args"] == ["/pause", "-v"]
    assert config["root"] == {"path": rootfs, "readonly": True}
    pause = next(m for m in config["mounts"] if m["destination"] == "/pause")
    assert pause["source"] == "/opt/minirun-pause" and "ro" in pause["options"]
    # without one, the host's tree read-only, for the Python holder
    python = bundle.sandbox_config(make_pod(), cgroups_path="x", resources={},
                                   pause_args=["/usr/bin/python3", "-m", "minirun.pause.pause"])
    assert python["root"]["path"] == "/" and python["process"]["args"][0] == "/usr/bin/python3"


# --- the process ---------------------------------------------------------------

@pytest.mark.parametrize("container, expected", [
    ({}, ["/bin/sh", "-c", "echo hi"]),
    ({"command": ["sleep"], "args": ["10"]}, ["sleep", "10"]),
    ({"command": ["sleep", "5"]}, ["sleep", "5"]),
    ({"args": ["echo", "x"]}, ["echo", "x"]),
    ({"command": ["echo", "$(GREETING) $(MISSING) $$(GREETING)"],
      "env": [{"name": "WHO", "value": "world"},
              {"name": "GREETING", "value": "hello $(WHO)"}]},
     ["echo", "hello world $(MISSING) $(GREETING)"]),
])
def test_process_args_follow_kubernetes(image, container, expected):
    assert config_for(make_pod(container), image)["process"]["args"] == expected


def test_an_image_without_a_command_needs_one(image):
    image.default_args = []
    with pytest.raises(MinirunError, match="no default command"):
        config_for(make_pod(), image)


def test_environment_merges_image_hostname_and_container(image):
    pod = make_pod({"env": [{"name": "TERM", "value": "dumb"}, {"name": "A", "value": "1"}]})
    assert config_for(pod, image)["process"]["env"] == \
        ["PATH=/bin", "TERM=dumb", "HOSTNAME=web", "A=1"]


def test_working_dir_and_readonly_root(image):
    config = config_for(make_pod({"workingDir": "/srv",
                                  "securityContext": {"readOnlyRootFilesystem": True}}), image)
    assert config["process"]["cwd"] == "/srv"
    assert config["root"] == {"path": image.rootfs, "readonly": True}
    assert config_for(make_pod(), image)["root"]["readonly"] is False


@pytest.mark.parametrize("container, pod_sc, expected", [
    ({}, {}, (0, 0)),
    ({"securityContext": {"runAsUser": 1000}}, {}, (1000, 1000)),       # group from passwd
    ({"securityContext": {"runAsUser": 33}}, {}, (33, 44)),
    ({"securityContext": {"runAsUser": 4242}}, {}, (4242, 0)),          # not in passwd
    ({"securityContext": {"runAsUser": 1000, "runAsGroup": 5}}, {}, (1000, 5)),
    ({}, {"runAsUser": 33, "runAsGroup": 7}, (33, 7)),
    ({"securityContext": {"runAsUser": 1000}}, {"runAsUser": 33}, (1000, 1000)),
])
def test_user(image, container, pod_sc, expected):
    config = config_for(make_pod(container, securityContext=pod_sc), image)
    user = config["process"]["user"]
    assert (user["uid"], user["gid"]) == expected


def test_run_as_non_root_refuses_root(image):
    with pytest.raises(MinirunError, match="runAsNonRoot and image will run as root"):
        config_for(make_pod({"securityContext": {"runAsNonRoot": True}}), image)
    config_for(make_pod({"securityContext": {"runAsNonRoot": True, "runAsUser": 1000}}), image)


def test_no_new_privileges_only_when_escalation_is_forbidden(image):
    assert config_for(make_pod(), image)["process"]["noNewPrivileges"] is False
    forbidden = make_pod({"securityContext": {"allowPrivilegeEscalation": False}})
    assert config_for(forbidden, image)["process"]["noNewPrivileges"] is True


# --- capabilities ---------------------------------------------------------------

CONTAINERD_DEFAULT = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                      "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}


def _held() -> set[str]:
    """Every capability this test process holds: what "all" can mean for a runtime."""
    with open("/proc/self/status") as fh:
        mask = int(next(line for line in fh if line.startswith("CapEff:")).split()[1], 16)
    return {name for name, bit in CAPABILITIES.items() if mask & (1 << bit)}


EVERY = _held()


@pytest.mark.parametrize("caps, expected", [
    ({}, CONTAINERD_DEFAULT),
    ({"add": ["NET_ADMIN"], "drop": ["NET_RAW", "MKNOD"]},
     CONTAINERD_DEFAULT - {"CAP_NET_RAW", "CAP_MKNOD"} | {"CAP_NET_ADMIN"}),
    ({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, {"CAP_NET_BIND_SERVICE"}),
    ({"add": ["ALL"], "drop": ["SYS_ADMIN"]}, EVERY - {"CAP_SYS_ADMIN"}),
    ({"drop": ["all"]}, set()),
])
def test_capabilities_like_containerd(image, caps, expected):
    config = config_for(make_pod({"securityContext": {"capabilities": caps}}), image)
    sets = config["process"]["capabilities"]
    assert set(sets["bounding"]) == expected
    assert sets["bounding"] == sets["effective"] == sets["permitted"]


def test_privileged_gets_everything(image):
    config = config_for(make_pod({"securityContext": {
        "privileged": True, "capabilities": {"drop": ["ALL"]}}}), image)
    assert set(config["process"]["capabilities"]["bounding"]) == EVERY
    assert "maskedPaths" not in config["linux"] and "readonlyPaths" not in config["linux"]
    sys_mount = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_mount["options"]
    assert config["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_unprivileged_hides_and_protects_paths(image):
    config = config_for(make_pod(), image)
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    assert "/proc/sys" in config["linux"]["readonlyPaths"]
    sys_mount = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" in sys_mount["options"]
    assert config["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


# --- mounts and volumes ---------------------------------------------------------------

def test_volume_mounts(image, tmp_path):
    pod = make_pod({"volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                                     {"name": "logs", "mountPath": "/var/log/", "readOnly": True}]},
                   volumes=[{"name": "cache", "emptyDir": {}},
                            {"name": "logs", "hostPath": {"path": "/var/log"}}])
    mounts = {m["destination"]: m for m in config_for(pod, image, str(tmp_path))["mounts"]}
    assert mounts["/cache"]["source"] == str(tmp_path / "cache")
    assert mounts["/var/log"]["source"] == "/var/log"
    assert "ro" in mounts["/var/log"]["options"] and "ro" not in mounts["/cache"]["options"]
    assert mounts["/dev/shm"]["source"] == str(tmp_path / "_shm")
    assert mounts["/run"]["type"] == "tmpfs"          # the image's own tmpfs
    host_ipc = make_pod(hostIPC=True)
    shm = next(m for m in config_for(host_ipc, image)["mounts"] if m["destination"] == "/dev/shm")
    assert shm["source"] == "/dev/shm"


@pytest.mark.parametrize("pod_spec", [{}, {"shareProcessNamespace": True}, {"hostNetwork": True},
                                      {"hostPID": True, "hostIPC": True}])
def test_minirun_parses_every_config(image, tmp_path, pod_spec):
    pod = make_pod({"securityContext": {"runAsUser": 1000}, "volumeMounts": [
        {"name": "data", "mountPath": "/data"}]}, volumes=[{"name": "data", "emptyDir": {}}],
        **pod_spec)
    cfg = parse_config(config_for(pod, image, str(tmp_path)), str(tmp_path))
    assert cfg.process.oom_score_adj == 1000 and cfg.cgroups_path == "kubepods/podu-1/app"
    rootfs = bundle.make_pause_rootfs(str(tmp_path / "pause-root"))
    sandbox = bundle.sandbox_config(pod, cgroups_path="kubepods/podu-1/_pause",
                                    resources={"cpu": {"shares": 2}}, rootfs=rootfs,
                                    pause_args=["/bin/true"], volumes_dir=str(tmp_path))
    parse_config(sandbox, str(tmp_path))


def test_write_bundle(tmp_path, image):
    directory = bundle.write_bundle(str(tmp_path / "b"), config_for(make_pod(), image))
    assert Path(directory, "config.json").is_file()


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as fh:
        return {line.split()[4] for line in fh}


def test_prepare_and_remove_volumes(tmp_path):
    before = mount_points()
    host_dir, host_file = tmp_path / "made" / "dir", tmp_path / "file"
    pod = make_pod(volumes=[
        {"name": "disk", "emptyDir": {}},
        {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "dir", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
        {"name": "file", "hostPath": {"path": str(host_file), "type": "FileOrCreate"}},
    ])
    volumes = tmp_path / "vols"
    bundle.prepare_volumes(pod, str(volumes))
    try:
        assert oct((volumes / "disk").stat().st_mode & 0o777) == "0o777"
        assert host_dir.is_dir() and host_file.is_file()
        new = mount_points() - before
        assert new == {str(volumes / "_shm"), str(volumes / "ram")}
        st = os.statvfs(volumes / "ram")
        assert st.f_blocks * st.f_frsize == 8 << 20
        bundle.prepare_volumes(pod, str(volumes))        # again: nothing mounted twice
        assert mount_points() - before == new
    finally:
        bundle.remove_volumes(pod, str(volumes))
    assert mount_points() == before
    assert not volumes.exists() and host_dir.is_dir()   # a hostPath is never removed


@pytest.mark.parametrize("path_type, make, message", [
    ("Directory", None, "does not exist"),
    ("Directory", "file", "is not a directory"),
    ("File", "dir", "is not a file"),
    ("Socket", "file", "is not a socket"),
    ("", None, "does not exist"),
])
def test_host_path_types_are_checked(tmp_path, path_type, make, message):
    target = tmp_path / "target"
    if make == "file":
        target.write_text("")
    elif make == "dir":
        target.mkdir()
    pod = make_pod(volumes=[{"name": "h", "hostPath": {"path": str(target), "type": path_type}}],
                   hostIPC=True)
    with pytest.raises(MinirunError, match=message) as err:
        bundle.prepare_volumes(pod, str(tmp_path / "vols"))
    assert str(err.value).startswith("spec.volumes[0].hostPath.path")
    bundle.remove_volumes(pod, str(tmp_path / "vols"))
