"""A pod on disk: ``--root/.pods/NAME/`` holds what the kubelet knows about it.

``pod.json`` is the pod's status (phase, IPs, each container's state and
restart count), rewritten atomically under flock(2) by whoever changes it:
the supervisor while the pod runs, ``pod stop`` and ``pod rm`` after. Next
to it: the manifest it came from, one log file per container, and the
directories behind its emptyDir volumes.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field

from minirun.errors import MinirunError
from minirun.state import now_rfc3339, write_atomic

PODS_DIR = ".pods"


@dataclass
class ContainerStatus:
    """One container's line in ``containerStatuses``, plus what a student wants to read."""
    name: str
    container_id: str                  # the runtime's ID: POD.NAME
    init: bool = False
    state: str = "waiting"             # waiting, running, terminated
    reason: str = "ContainerCreating"  # Completed, Error, OOMKilled, CrashLoopBackOff
    exit_code: int | None = None
    restart_count: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    pid: int = 0                       # host PID of its init
    cgroup: str = ""                   # its memory (or first) cgroup directory
    oom_score_adj: int | None = None
    next_start: float = 0.0            # monotonic deadline of the back-off, if waiting
    message: str = ""                  # why it could not be created
    last_terminated: dict | None = None   # kubectl's lastState.terminated


@dataclass
class PodRecord:
    name: str
    uid: str
    namespace: str
    qos_class: str
    manifest: str                      # the copy in the pod directory
    created: str = field(default_factory=now_rfc3339)
    phase: str = "Pending"
    pod_ip: str = ""
    host_ip: str = ""
    start_time: str | None = None
    sandbox_id: str = ""
    sandbox_pid: int = 0
    cgroup: dict | None = None         # the pod-level cgroup (minirun.cgroups.Cgroup.to_dict())
    supervisor_pid: int = 0
    requests: dict[str, int] = field(default_factory=dict)   # what admission counted
    containers: list[ContainerStatus] = field(default_factory=list)

    def status(self, name: str) -> ContainerStatus:
        return next(c for c in self.containers if c.name == name)


class PodDir:
    """The directory of one pod, with its lock."""

    def __init__(self, root: str, name: str) -> None:
        self.root = root
        self.name = name
        self.path = os.path.join(root, PODS_DIR, name)
        self._lock = -1

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def log_path(self, container: str) -> str:
        return self.file("logs", f"{container}.log")

    def exists(self) -> bool:
        return os.path.isfile(self.file("pod.json"))

    def make(self) -> None:
        os.makedirs(os.path.join(self.root, PODS_DIR), mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            raise MinirunError(f"pod {self.name!r} already exists "
                               f"(`minirun pod rm {self.name}` removes it)") from None
        for sub in ("logs", "volumes", "bundles"):
            os.mkdir(self.file(sub))

    def __enter__(self) -> PodDir:
        self._lock = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._lock)
        self._lock = -1

    def load(self) -> PodRecord:
        try:
            with open(self.file("pod.json")) as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise MinirunError(f"pod {self.name!r} does not exist") from None
        data["containers"] = [ContainerStatus(**c) for c in data["containers"]]
        return PodRecord(**data)

    def save(self, record: PodRecord) -> None:
        write_atomic(self.file("pod.json"), json.dumps(asdict(record), indent=1))

    def remove(self) -> None:
        import shutil
        shutil.rmtree(self.path, ignore_errors=True)


def pod_names(root: str) -> list[str]:
    base = os.path.join(root, PODS_DIR)
    try:
        return sorted(n for n in os.listdir(base) if os.path.isfile(os.path.join(base, n,
                                                                                 "pod.json")))
    except FileNotFoundError:
        return []
