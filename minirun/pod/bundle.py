"""A pod's containers as OCI config.json dicts, the way containerd's CRI plugin
builds them for the kubelet (pkg/cri/server: sandbox_run_linux.go,
container_create_linux.go).

The pause container (``sandbox_config``) is made first, with new network, IPC,
UTS and PID namespaces. Every other container (``container_config``) then
*joins* the pause's namespaces by path, ``/proc/<pause PID>/ns/net``, so all
share one IP address, one hostname and one IPC namespace, and with
``shareProcessNamespace`` one PID namespace, where the pause is PID 1 and
reaps orphans. ``hostNetwork`` / ``hostIPC`` / ``hostPID`` leave a namespace
out altogether: the container then stays in the host's (hostNetwork takes
the host's UTS namespace too, as containerd does).

Pod-wide directories live under ``volumes_dir`` and are made by
``prepare_volumes`` (once per pod, before any container) and removed by
``remove_volumes``: one directory per emptyDir, and ``_shm``, the pod's
/dev/shm, a tmpfs every container binds (one IPC namespace, one /dev/shm).
"""

from __future__ import annotations

import json
import os
import stat

from minirun.config.pod import Container, Pod
from minirun.errors import MinirunError
from minirun.pod.images import Image
from minirun.pod.qos import SANDBOX_OOM_SCORE_ADJ

# containerd's defaultUnixCaps (oci/spec.go): what an unprivileged container gets
DEFAULT_CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
                        "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
                        "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap",
                "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
SHM_DIR = "_shm"              # under volumes_dir; "_" is never a volume name
SHM_SIZE = 64 << 20           # containerd's defaultShmSize
PAUSE_PATH = "/pause"         # where the pause binary appears in its rootfs
PAUSE_USER = 65535            # the pause image's USER 65535:65535: it needs no rights
# containerd's CRI annotations (pkg/cri/annotations), so `minirun list` can tell them apart
CRI = "io.kubernetes.cri"


# --- pieces shared by both configs ------------------------------------------------------

def _namespaces(pod: Pod, sandbox_pid: int | None) -> list[dict]:
    """New namespaces for the sandbox (sandbox_pid None); its paths for a container."""
    wanted = []
    if not pod.host_network:
        wanted += [("network", "net"), ("uts", "uts")]
    if not pod.host_ipc:
        wanted.append(("ipc", "ipc"))
    if not pod.host_pid and (sandbox_pid is None or pod.share_process_namespace):
        wanted.append(("pid", "pid"))
    out = [{"type": t} if sandbox_pid is None else
           {"type": t, "path": f"/proc/{sandbox_pid}/ns/{name}"} for t, name in wanted]
    if not pod.host_pid and sandbox_pid is not None and not pod.share_process_namespace:
        out.append({"type": "pid"})          # a PID namespace of the container's own
    return out + [{"type": "mount"}, {"type": "cgroup"}]


def _base_mounts(privileged: bool) -> list[dict]:
    """containerd's default mounts; /sys and the cgroup tree writable only when privileged."""
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
    ]


def _shm_mount(pod: Pod, volumes_dir: str | None) -> dict:
    """The pod's /dev/shm: the host's with hostIPC, else the pod's shared tmpfs."""
    if pod.host_ipc:
        source = "/dev/shm"
    elif volumes_dir is not None:
        source = os.path.join(volumes_dir, SHM_DIR)
    else:
        return {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={SHM_SIZE}"]}
    return {"destination": "/dev/shm", "type": "bind", "source": source,
            "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]}


def _with_devices(resources: dict, privileged: bool) -> dict:
    """Device cgroup rules: deny all (minirun adds runc's standard nodes after it), or
    allow all for a privileged container."""
    out = dict(resources)
    out["devices"] = [{"allow": privileged, "access": "rwm"}]
    return out


def _annotations(pod: Pod, kind: str, name: str | None = None, image: str = "") -> dict:
    out = {f"{CRI}.container-type": kind, f"{CRI}.sandbox-name": pod.name,
           f"{CRI}.sandbox-namespace": pod.metadata.namespace,
           f"{CRI}.sandbox-uid": pod.uid}
    if name is not None:
        out[f"{CRI}.container-name"] = name
        out[f"{CRI}.image-name"] = image
    return out


def pod_hostname(pod: Pod) -> str:
    """spec.hostname, else the pod's name; the machine's own name with hostNetwork."""
    if pod.host_network:
        import socket
        return socket.gethostname()
    return pod.hostname or pod.name


# --- the sandbox (pause) ------------------------------------------------------------------

def make_pause_rootfs(directory: str) -> str:
    """A root filesystem for the pause: only mount points, /proc, /dev and /pause.

    The pause binary is static, so it needs no library; it is bind-mounted at
    /pause read-only, and the tree itself is read-only to the container. One
    such directory serves every pod. Made once; returns its absolute path.
    """
    directory = os.path.abspath(directory)
    for sub in ("proc", "dev"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    target = directory + PAUSE_PATH
    if not os.path.exists(target):
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o755))
    return directory


def sandbox_config(pod: Pod, *, cgroups_path: str, resources: dict, pause_args: list[str],
                   rootfs: str | None = None, volumes_dir: str | None = None,
                   network: str | None = None,
                   oom_score_adj: int = SANDBOX_OOM_SCORE_ADJ) -> dict:
    """The pause container: the process the pod's namespaces hang on.

    ``pause_args`` is minirun.pause.pause_command(). With ``rootfs`` (a directory
    from make_pause_rootfs) its program is bind-mounted there at /pause: right
    for the static native holder. Without, the rootfs is the host's own tree,
    read-only, which is what the Python holder (an interpreter and minirun)
    needs. ``network`` names a minirun network to attach the new network
    namespace to; the pod's hostPorts come along.

    oom_score_adj -998 and cpu shares 2 are containerd's sandbox defaults
    (pass qos.sandbox_resources() as ``resources``; on a machine that withholds
    CAP_SYS_RESOURCE pass qos.restrict_oom_score_adj(-998)). It runs as 65535
    with no capabilities at all: pausing needs no privilege.
    """
    mounts = [m for m in _base_mounts(False) if m["destination"] in ("/proc", "/dev")]
    mounts.append(_shm_mount(pod, volumes_dir))
    if rootfs is not None:
        program = os.path.abspath(pause_args[0])
        mounts.append({"destination": PAUSE_PATH, "type": "bind", "source": program,
                       "options": ["bind", "ro", "nosuid", "nodev"]})
        args = [PAUSE_PATH, *pause_args[1:]]
    else:
        args = list(pause_args)
    config: dict = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": PAUSE_USER, "gid": PAUSE_USER},
                    "args": args, "env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "cwd": "/",
                    "capabilities": {s: [] for s in ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True, "oomScoreAdj": oom_score_adj},
        "root": {"path": os.path.abspath(rootfs or "/"), "readonly": True},
        "mounts": mounts,
        "annotations": _annotations(pod, "sandbox"),
        "linux": {"namespaces": _namespaces(pod, None), "cgroupsPath": cgroups_path,
                  "resources": _with_devices(resources, False),
                  "maskedPaths": MASKED_PATHS, "readonlyPaths": READONLY_PATHS},
    }
    if not pod.host_network:
        config["hostname"] = pod_hostname(pod)
        if network is not None:
            from minirun.container import NETWORK_ANNOTATION, PORTS_ANNOTATION
            config["annotations"][NETWORK_ANNOTATION] = network
            ports = host_ports(pod)
            if ports:
                config["annotations"][PORTS_ANNOTATION] = ",".join(ports)
    return config


def host_ports(pod: Pod) -> list[str]:
    """Every hostPort of the pod as minirun's ``HOST:CONTAINER/proto`` port forwards."""
    return [f"{p.host_port}:{p.container_port}/{p.protocol.lower()}"
            for c in pod.all_containers() for p in c.ports if p.host_port]


# --- app and init containers ----------------------------------------------------------------

def container_config(pod: Pod, container: Container, image: Image, *, sandbox_pid: int,
                     cgroups_path: str, resources: dict, oom_score_adj: int,
                     volumes_dir: str) -> dict:
    """The config.json of one of the pod's containers (init or app).

    ``resources`` is qos.container_resources(), ``oom_score_adj`` qos.oom_score_adj(),
    ``cgroups_path`` qos.container_cgroup_path(); ``volumes_dir`` is where
    prepare_volumes made the pod's emptyDirs and /dev/shm.
    """
    sc = container.security_context
    env = environment(pod, container, image)
    uid, gid = user_ids(pod, container, image)
    run_as_non_root = sc.run_as_non_root if sc.run_as_non_root is not None else \
        pod.security_context.run_as_non_root
    if run_as_non_root and uid == 0:
        raise MinirunError(f"pod {pod.name!r}, container {container.name!r}: container has "
                           "runAsNonRoot and image will run as root (set runAsUser)")
    caps = capabilities(container)
    process = {
        "terminal": False,
        "user": {"uid": uid, "gid": gid},
        "args": process_args(container, image),
        "env": env,
        "cwd": container.working_dir or image.default_cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.allow_privilege_escalation is False,
        "oomScoreAdj": oom_score_adj,
    }
    groups = pod.security_context.supplemental_groups
    if groups:
        process["user"]["additionalGids"] = list(groups)
    mounts = _base_mounts(sc.privileged)
    mounts.insert(3, _shm_mount(pod, volumes_dir))
    mounts += [{"destination": d, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=755"]} for d in image.tmpfs]
    mounts += volume_mounts(pod, container, volumes_dir)
    linux: dict = {"namespaces": _namespaces(pod, sandbox_pid), "cgroupsPath": cgroups_path,
                   "resources": _with_devices(resources, sc.privileged)}
    if not sc.privileged:
        linux["maskedPaths"] = MASKED_PATHS
        linux["readonlyPaths"] = READONLY_PATHS
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": image.rootfs, "readonly": sc.read_only_root_filesystem},
        "mounts": mounts,
        "annotations": _annotations(pod, "container", container.name, container.image),
        "linux": linux,
    }


def capabilities(container: Container) -> list[str]:
    """containerd's WithCapabilities: all for a privileged container; else the default
    set, then add ALL / drop ALL, then each added, then each dropped.

    "All" is every capability this process holds (containerd's
    WithAllCurrentCapabilities), not every one the kernel knows: a runtime
    cannot hand out a capability it lacks (capset(2) answers EPERM).
    """
    every = current_capabilities()
    sc = container.security_context
    if sc.privileged:
        return every
    caps = list(DEFAULT_CAPABILITIES)
    if "ALL" in sc.capabilities_add:
        caps = list(every)
    if "ALL" in sc.capabilities_drop:
        caps = []
    for name in sc.capabilities_add:
        if name != "ALL" and f"CAP_{name}" not in caps:
            caps.append(f"CAP_{name}")
    dropped = {f"CAP_{name}" for name in sc.capabilities_drop}
    return [c for c in caps if c not in dropped]


def current_capabilities() -> list[str]:
    """The names in this process's effective set (CapEff in /proc/self/status, proc(5))."""
    from minirun.capabilities import names

    with open("/proc/self/status") as fh:
        mask = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    return names(mask)


def expand(text: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion): ``$(NAME)``
    becomes the variable's value if it is defined, else stays as written; ``$$`` is
    an escaped ``$``."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1:
                name = text[i + 2:end]
                out.append(variables.get(name, text[i:end + 1]))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _container_variables(container: Container) -> dict[str, str]:
    """The container's env, each value expanded with the variables defined before it."""
    variables: dict[str, str] = {}
    for var in container.env:
        variables[var.name] = expand(var.value, variables)
    return variables


def environment(pod: Pod, container: Container, image: Image) -> list[str]:
    """The image's env, HOSTNAME (containerd sets it), then the container's env; a later
    variable replaces an earlier one of the same name, in its place."""
    merged: dict[str, str] = {}
    for item in image.default_env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged["HOSTNAME"] = pod_hostname(pod)
    merged.update(_container_variables(container))
    return [f"{k}={v}" for k, v in merged.items()]


def process_args(container: Container, image: Image) -> list[str]:
    """Kubernetes' rules with an image whose default command is its Cmd: ``command``
    replaces it (with ``args`` appended), ``args`` alone replace it too, neither runs it.
    $(VAR) references to the container's env are expanded."""
    if container.command:
        args = [*container.command, *container.args]
    elif container.args:
        args = list(container.args)
    else:
        args = list(image.default_args)
    if not args:
        raise MinirunError(f"container {container.name!r}: image {image.name} has no default "
                           "command; set command in the manifest")
    variables = _container_variables(container)
    return [expand(a, variables) for a in args]


def user_ids(pod: Pod, container: Container, image: Image) -> tuple[int, int]:
    """runAsUser / runAsGroup of the container, else of the pod, else the image's user.

    A runAsUser without runAsGroup takes the user's primary group from the image's
    /etc/passwd, or 0 (containerd's WithUserID)."""
    sc, psc = container.security_context, pod.security_context
    uid = sc.run_as_user if sc.run_as_user is not None else psc.run_as_user
    gid = sc.run_as_group if sc.run_as_group is not None else psc.run_as_group
    if uid is None:
        return image.uid, gid if gid is not None else image.gid
    if gid is None:
        gid = _primary_group(image.rootfs, uid)
    return uid, gid


def _primary_group(rootfs: str, uid: int) -> int:
    try:
        with open(os.path.join(rootfs, "etc/passwd")) as fh:
            for line in fh:
                parts = line.strip().split(":")
                if len(parts) > 3 and parts[2] == str(uid) and parts[3].isdigit():
                    return int(parts[3])
    except OSError:
        pass
    return 0


def volume_mounts(pod: Pod, container: Container, volumes_dir: str) -> list[dict]:
    """Each volumeMount as a bind mount: an emptyDir's directory under volumes_dir, a
    hostPath's host path; rprivate, as the kubelet's default propagation."""
    mounts = []
    for m in container.volume_mounts:
        volume = pod.volume(m.name)
        source = volume.path if volume.kind == "hostPath" else os.path.join(volumes_dir,
                                                                            volume.name)
        options = ["rbind", "rprivate"] + (["ro"] if m.read_only else [])
        mounts.append({"destination": m.mount_path, "type": "bind", "source": source,
                       "options": options})
    return mounts


def write_bundle(directory: str, config: dict) -> str:
    """Write ``directory/config.json`` (the rootfs is elsewhere: config has its path)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "config.json")
    with open(path, "w") as fh:
        json.dump(config, fh, indent=1)
    return directory


# --- the pod's volumes on the host -----------------------------------------------------------

def prepare_volumes(pod: Pod, volumes_dir: str) -> None:
    """Make what the pod's containers bind: emptyDirs, the pod's /dev/shm, and the hostPath
    checks (and creations) their ``type`` asks for (the kubelet's volume setup)."""
    from minirun import libc
    from minirun.libc import lib

    os.makedirs(volumes_dir, exist_ok=True)
    tmpfs_flags = lib.MS_NOSUID | lib.MS_NODEV
    if not pod.host_ipc:
        shm = os.path.join(volumes_dir, SHM_DIR)
        os.makedirs(shm, exist_ok=True)
        if not os.path.ismount(shm):
            libc.mount("shm", shm, "tmpfs", tmpfs_flags | lib.MS_NOEXEC,
                       f"mode=1777,size={SHM_SIZE}")
    for i, volume in enumerate(pod.volumes):
        if volume.kind == "hostPath":
            _check_host_path(volume.path, volume.type, f"spec.volumes[{i}].hostPath")
            continue
        path = os.path.join(volumes_dir, volume.name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)        # emptyDir is world-writable, whoever the container runs as
        if volume.medium == "Memory" and not os.path.ismount(path):
            size = f",size={volume.size_limit}" if volume.size_limit else ""
            libc.mount("tmpfs", path, "tmpfs", tmpfs_flags, f"mode=777{size}")


def remove_volumes(pod: Pod, volumes_dir: str) -> None:
    """Unmount the pod's tmpfs volumes and delete volumes_dir (never a hostPath)."""
    import shutil

    from minirun import libc
    from minirun.libc import lib

    if not os.path.isdir(volumes_dir):
        return
    for name in [SHM_DIR, *(v.name for v in pod.volumes if v.kind == "emptyDir")]:
        path = os.path.join(volumes_dir, name)
        if os.path.ismount(path):
            libc.umount2(path, lib.MNT_DETACH)
    shutil.rmtree(volumes_dir)


_HOST_PATH_KINDS = {"Directory": (stat.S_ISDIR, "a directory"),
                    "File": (stat.S_ISREG, "a file"), "Socket": (stat.S_ISSOCK, "a socket"),
                    "CharDevice": (stat.S_ISCHR, "a character device"),
                    "BlockDevice": (stat.S_ISBLK, "a block device")}


def _check_host_path(path: str, kind: str, where: str) -> None:
    if kind == "DirectoryOrCreate":
        os.makedirs(path, mode=0o755, exist_ok=True)
        kind = "Directory"
    elif kind == "FileOrCreate":
        if not os.path.isdir(os.path.dirname(path)):
            raise MinirunError(f"{where}.path: {path}: its directory does not exist "
                               "(FileOrCreate does not make parent directories)")
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        kind = "File"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MinirunError(f"{where}.path: {path} does not exist on the host (type "
                           "DirectoryOrCreate or FileOrCreate would create it)") from None
    if kind in _HOST_PATH_KINDS:
        test, what = _HOST_PATH_KINDS[kind]
        if not test(mode):
            raise MinirunError(f"{where}.path: {path} is not {what} (type: {kind})")
