"""What ``pod ls`` and ``pod inspect`` show: kubectl's view of a pod, read from pod.json.

``pod inspect`` goes beyond kubectl: each container's host PID, cgroup
directory and oom_score_adj, so a student can go and read the files.
"""

from __future__ import annotations

import calendar
import time

from minirun.errors import MinirunError
from minirun.pod.store import ContainerStatus, PodDir, PodRecord, pod_names

__all__ = ["pod_names", "summary_rows", "pod_status", "log_file", "container_runtime_id"]


def summary_rows(root: str, names: list[str]) -> list[tuple[str, ...]]:
    rows = []
    for name in names:
        record = PodDir(root, name).load()
        apps = [c for c in record.containers if not c.init]
        ready = sum(1 for c in apps if c.state == "running")
        restarts = sum(c.restart_count for c in record.containers)
        rows.append((name, f"{ready}/{len(apps)}", _status_word(record), str(restarts),
                     _age(record.created), record.pod_ip or "<none>", record.qos_class))
    return rows


def _status_word(record: PodRecord) -> str:
    """kubectl's STATUS column: a waiting reason wins over the phase."""
    for c in record.containers:
        if c.state == "waiting" and c.reason not in ("", "ContainerCreating"):
            return c.reason
        if c.state == "terminated" and c.reason == "OOMKilled":
            return "OOMKilled"
    return record.phase


def _age(created: str) -> str:
    then = calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    seconds = int(time.time() - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def pod_status(root: str, name: str) -> dict:
    """The object of ``kubectl get pod -o yaml`` (metadata and status)."""
    record = PodDir(root, name).load()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": record.name, "namespace": record.namespace, "uid": record.uid,
                     "creationTimestamp": record.created},
        "status": {
            "phase": record.phase,
            "qosClass": record.qos_class,
            "podIP": record.pod_ip,
            "hostIP": record.host_ip,
            "startTime": record.start_time,
            "initContainerStatuses": [_container(c) for c in record.containers if c.init],
            "containerStatuses": [_container(c) for c in record.containers if not c.init],
        },
        "minirun": {"sandbox": {"id": record.sandbox_id, "pid": record.sandbox_pid},
                    "podCgroup": _cgroup_dirs(record.cgroup),
                    "supervisorPid": record.supervisor_pid},
    }


def _container(c: ContainerStatus) -> dict:
    if c.state == "running":
        state = {"running": {"startedAt": c.started_at}}
    elif c.state == "terminated":
        state = {"terminated": {"exitCode": c.exit_code, "reason": c.reason,
                                "startedAt": c.started_at, "finishedAt": c.finished_at}}
    else:
        state = {"waiting": {"reason": c.reason, **({"message": c.message} if c.message
                                                     else {})}}
    out = {"name": c.name, "state": state, "ready": c.state == "running",
           "restartCount": c.restart_count, "containerID": f"minirun://{c.container_id}",
           "hostPID": c.pid or None, "cgroup": c.cgroup or None,
           "oomScoreAdj": c.oom_score_adj}
    if c.last_terminated:
        out["lastState"] = {"terminated": c.last_terminated}
    return out


def _cgroup_dirs(data: dict | None) -> list[str]:
    return [d["path"] for d in data["dirs"]] if data else []


def container_runtime_id(root: str, pod: str, container: str | None) -> str:
    """The runtime's ID of a pod's container (the first app container by default)."""
    record = PodDir(root, pod).load()
    apps = [c for c in record.containers if not c.init]
    if container is None:
        return apps[0].container_id
    for c in record.containers:
        if c.name == container:
            return c.container_id
    names = ", ".join(c.name for c in record.containers)
    raise MinirunError(f"pod {pod!r} has no container {container!r} (it has: {names})")


def log_file(root: str, pod: str, container: str | None) -> str:
    record = PodDir(root, pod).load()
    name = container or next(c.name for c in record.containers if not c.init)
    if container is not None and not any(c.name == container for c in record.containers):
        raise MinirunError(f"pod {pod!r} has no container {container!r}")
    return PodDir(root, pod).log_path(name)
