"""A pod's life, as the kubelet drives a container runtime through it.

    create_pod:   admit the pod, make its cgroup (kubepods/<qos>/pod<uid>), start
                  the sandbox (the pause holder, which keeps the network, IPC and
                  UTS namespaces) and wire its network
    start_container / container_exited: one container at a time, joined to the
                  sandbox's namespaces; the supervisor (supervisor.py) calls these
    stop_pod:     SIGTERM, terminationGracePeriodSeconds, SIGKILL
    remove_pod:   containers, sandbox, network, cgroups and state, all gone

Containers are ordinary minirun containers named ``POD.CONTAINER`` (the
sandbox is ``POD.pause``): ``minirun list`` and ``minirun state`` show them.
"""

from __future__ import annotations

import os
import signal
import time

from minirun import container
from minirun.config.oci import parse_config
from minirun.config.pod import Container, Pod, load_pod
from minirun.errors import MinirunError, NotFoundError
from minirun.pod import bundle, qos
from minirun.pod.store import ContainerStatus, PodDir, PodRecord, pod_names
from minirun.state import now_rfc3339

POD_NETWORK = "default"
PAUSE_ROOTFS = ".pause-rootfs"     # below --root: the empty tree the native pause runs in


def sandbox_id(pod_name: str) -> str:
    return f"{pod_name}.pause"


def container_id(pod_name: str, name: str) -> str:
    return f"{pod_name}.{name}"


def create_pod(root: str, manifest: str, *, cgroup_root: str | None = None,
               node_config=None, pod: Pod | None = None) -> PodRecord:
    """Admit the pod and start its sandbox; its containers are started by the supervisor.

    ``pod`` is the manifest already parsed, if the caller has it.
    """
    from minirun.cgroups import Cgroup
    from minirun.config.resources import parse_resources
    from minirun.pod import node
    from minirun.pod.images import resolve_image

    pod = pod or load_pod(manifest)
    node_config = node_config or node.NodeConfig()
    for c in pod.all_containers():   # an image that is not here fails the pod now, not later
        resolve_image(c.image)
    node.check_swap(node_config.fail_swap_on)
    requests = _admit(root, pod, node_config)
    pd = PodDir(root, pod.name)
    pd.make()
    record = PodRecord(name=pod.name, uid=pod.uid, namespace=pod.metadata.namespace,
                       qos_class=qos.qos_class(pod), manifest=pd.file("pod.yaml"),
                       requests=requests)
    pod_cgroup = None
    try:
        _keep_manifest(manifest, record.manifest, pod.uid)
        pod_cgroup = Cgroup.for_container(qos.pod_cgroup_path(pod), pod.name, cgroup_root)
        pod_cgroup.create(parse_resources(qos.pod_resources(pod), "pod resources"))
        record.cgroup = pod_cgroup.to_dict()
        record.containers = [ContainerStatus(c.name, container_id(pod.name, c.name), init=c.init)
                             for c in pod.all_containers()]
        _start_sandbox(root, pd, pod, record, cgroup_root)
        pd.save(record)
    except BaseException:
        _remove_sandbox(root, pod.name)
        bundle.remove_volumes(pod, pd.file("volumes"))
        if pod_cgroup is not None:
            pod_cgroup.destroy()
        pd.remove()
        raise
    return record


def _keep_manifest(source: str, target: str, uid: str) -> None:
    """Copy the manifest into the pod's directory with its uid filled in: the uid names
    the pod's cgroup (pod<UID>), so every later reading must see the same one."""
    import yaml

    with open(source) as fh:
        obj = yaml.safe_load(fh)
    obj.setdefault("metadata", {})["uid"] = uid
    with open(target, "w") as fh:
        yaml.safe_dump(obj, fh, sort_keys=False)


def _admit(root: str, pod: Pod, node_config) -> dict[str, int]:
    """The kubelet's admission: does the pod fit in what the pods already here leave?

    Returns the pod's own request totals, kept in its record for the next admission.
    """
    from minirun.pod import node

    allocatable = node.allocatable(node.capacity(), node_config)
    used: dict[str, int] = {}
    for name in pod_names(root):
        for key, amount in PodDir(root, name).load().requests.items():
            used[key] = used.get(key, 0) + amount
    reasons = node.admit(pod, allocatable, used)
    if reasons:
        raise MinirunError(f"pod {pod.name!r} rejected: " + "; ".join(reasons))
    return node.pod_request_totals(pod)


def _start_sandbox(root: str, pd: PodDir, pod: Pod, record: PodRecord,
                   cgroup_root: str | None) -> None:
    from minirun.pause import native_pause_path, pause_command

    bundle.prepare_volumes(pod, pd.file("volumes"))
    # the static native pause needs no more than an empty tree to be bind-mounted into
    rootfs = (bundle.make_pause_rootfs(os.path.join(root, PAUSE_ROOTFS))
              if native_pause_path() else None)
    config = bundle.sandbox_config(pod, cgroups_path=qos.sandbox_cgroup_path(pod),
                                   resources=qos.sandbox_resources(),
                                   pause_args=pause_command(), rootfs=rootfs,
                                   volumes_dir=pd.file("volumes"),
                                   network=None if pod.host_network else POD_NETWORK)
    sid = sandbox_id(pod.name)
    c = _create(root, pd, sid, config, "pause", cgroup_root)
    container.start(root, sid)
    record.sandbox_id, record.sandbox_pid = sid, c.record.pid
    record.host_ip = _host_ip()
    record.pod_ip = record.host_ip if pod.host_network else _pod_ip(root, sid)


def _create(root: str, pd: PodDir, cid: str, config: dict, log_name: str,
            cgroup_root: str | None) -> container.Container:
    """Write the bundle (for a student to read) and create the container, logging to a file."""
    adj = config["process"].get("oomScoreAdj")
    if adj is not None:
        config["process"]["oomScoreAdj"] = reachable_oom_score_adj(adj)
    bundle_dir = bundle.write_bundle(pd.file("bundles", log_name), config)
    log = os.open(pd.log_path(log_name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        return container.create(root, cid, bundle_dir, config=parse_config(config, bundle_dir),
                                cgroup_root=cgroup_root, stdio=(null, log, log))
    finally:
        os.close(log)
        os.close(null)


def reachable_oom_score_adj(wanted: int) -> int:
    """The kubelet's value, or the lowest this process may give when that is out of reach.

    proc(5): lowering oom_score_adj below the value a process started with
    needs CAP_SYS_RESOURCE. Without it (some VMs and containers deny it even
    to root), -998 for the sandbox and -997 for Guaranteed pods cannot be set:
    minirun says so and uses its own value instead of failing every pod.
    """
    from minirun import log
    from minirun.capabilities import CAPABILITIES, read_capabilities

    own = int(open("/proc/self/oom_score_adj").read())
    if wanted >= own or read_capabilities()["CapEff"] & (1 << CAPABILITIES["CAP_SYS_RESOURCE"]):
        return wanted
    log.warning(f"oom_score_adj {wanted} needs CAP_SYS_RESOURCE, which this process lacks: "
                f"using {own}")
    return own


def _pod_ip(root: str, sid: str) -> str:
    from minirun.network import get_network

    network = get_network(root, POD_NETWORK)
    return next((a.ip for a in network.attachments if a.owner == sid), "")


def _host_ip() -> str:
    """The address the kubelet would report: the first non-loopback IPv4 address here."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for msg in ipr.get_addr(family=2):
            address = msg.get_attr("IFA_ADDRESS")
            if address and not address.startswith("127."):
                return address
    return "127.0.0.1"


# --- containers ------------------------------------------------------------------------

def start_container(root: str, pd: PodDir, pod: Pod, record: PodRecord, c: Container,
                    cgroup_root: str | None = None) -> int:
    """Create and start one container of the pod; returns the host PID of its init."""
    from minirun.pod import images, node

    status = record.status(c.name)
    _delete_container(root, status.container_id)   # a previous run of it
    image = images.resolve_image(c.image)
    adj = qos.oom_score_adj(pod, c, node.memory_capacity())
    config = bundle.container_config(
        pod, c, image, sandbox_pid=record.sandbox_pid,
        cgroups_path=qos.container_cgroup_path(pod, c.name),
        resources=qos.container_resources(pod, c), oom_score_adj=adj,
        volumes_dir=pd.file("volumes"))
    created = _create(root, pd, status.container_id, config, c.name, cgroup_root)
    container.start(root, status.container_id)
    cgroup = created.cgroup()
    status.pid = created.record.pid
    status.state, status.reason, status.exit_code = "running", "", None
    status.started_at, status.finished_at = now_rfc3339(), None
    status.oom_score_adj = adj
    status.cgroup = (cgroup.dir_for("memory") or "") if cgroup is not None else ""
    return status.pid


def container_exited(root: str, record: PodRecord, name: str, exit_code: int) -> None:
    """Record how a container ended: Completed, Error or OOMKilled (from its cgroup)."""
    status = record.status(name)
    oom = False
    try:
        oom = container.load(root, status.container_id).oom_killed()
    except MinirunError:
        pass
    status.state, status.exit_code, status.finished_at = "terminated", exit_code, now_rfc3339()
    status.reason = "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error")
    status.pid = 0


def _delete_container(root: str, cid: str) -> None:
    try:
        container.delete(root, cid, force=True)
    except NotFoundError:
        pass


# --- stopping and removing ----------------------------------------------------------------

def stop_containers(root: str, record: PodRecord, grace: float) -> None:
    """SIGTERM every running container, wait up to ``grace`` seconds, then SIGKILL.

    The order is the kubelet's: app containers get the grace period, the
    sandbox goes last (remove_pod), so the pod's IP stays until the end.
    """
    running = []
    for status in record.containers:
        try:
            c = container.load(root, status.container_id)
        except NotFoundError:
            continue
        if c.status in ("running", "paused"):
            try:
                container.kill(root, status.container_id, signal.SIGTERM, all_processes=True)
                running.append(c)
            except MinirunError:
                pass
    deadline = time.monotonic() + grace
    for c in running:
        container.wait_for_exit(c.record, timeout=max(0.0, deadline - time.monotonic()))
    for status in record.containers:
        _delete_container(root, status.container_id)
        if status.state == "running":
            status.state, status.reason, status.finished_at = ("terminated", "Error",
                                                               now_rfc3339())


def remove_pod(root: str, name: str, grace: float | None = None) -> None:
    """Stop what runs, then remove containers, sandbox, network, cgroups and state."""
    from minirun.cgroups import Cgroup

    pd = PodDir(root, name)
    record = pd.load()
    stop_supervisor(record)
    pod = load_pod(record.manifest)
    stop_containers(root, record, pod.termination_grace_period_seconds if grace is None
                    else grace)
    _remove_sandbox(root, name)
    bundle.remove_volumes(pod, pd.file("volumes"))
    if record.cgroup is not None:
        Cgroup.from_dict(record.cgroup).destroy()
    pd.remove()


def _remove_sandbox(root: str, pod_name: str) -> None:
    _delete_container(root, sandbox_id(pod_name))   # detaches its network too


def stop_supervisor(record: PodRecord) -> None:
    """A detached supervisor (``pod start``) stops its pod on SIGTERM; wait for it."""
    from minirun.state import process_state

    pid = record.supervisor_pid
    if pid <= 0 or pid == os.getpid() or process_state(pid) in (None, "Z"):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while process_state(pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
