"""``minirun kubelet --manifests DIR``: static pods, as the kubelet runs /etc/kubernetes/manifests.

Once a second the directory is read: a new manifest starts its pod, a
removed one stops and removes it, a changed one (its content, not just its
mtime) recreates it. A manifest that does not parse is reported once and
skipped until it changes. One Supervisor serves every pod; SIGTERM or
SIGINT stops and removes them all, then the kubelet exits.
"""

from __future__ import annotations

import hashlib
import os
import time

from minirun import log
from minirun.errors import MinirunError
from minirun.pod import lifecycle
from minirun.pod.supervisor import Supervisor

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
SCAN_INTERVAL = 1.0


class StaticPods:
    def __init__(self, root: str, directory: str, cgroup_root: str | None, node_config) -> None:
        self.root = root
        self.directory = directory
        self.node_config = node_config
        self.supervisor = Supervisor(root, cgroup_root)
        self.cgroup_root = cgroup_root
        self.known: dict[str, tuple[str, str | None]] = {}   # path -> (digest, pod name)
        self._next_scan = 0.0

    def run(self) -> None:
        if not os.path.isdir(self.directory):
            raise MinirunError(f"--manifests {self.directory}: no such directory")
        log.info(f"kubelet: watching {self.directory}")
        try:
            self.supervisor.run(extra_work=self.scan_if_due)
        finally:
            self.supervisor.stop_all(remove=True)

    def scan_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + SCAN_INTERVAL
            self.scan()

    def scan(self) -> None:
        """Bring the running pods in line with the files in the directory."""
        current = {}
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                try:
                    with open(path, "rb") as fh:
                        current[path] = hashlib.sha256(fh.read()).hexdigest()
                except OSError:
                    continue
        for path in list(self.known):
            digest, pod = self.known[path]
            if path not in current or current[path] != digest:
                if pod is not None:
                    log.info(f"kubelet: {os.path.basename(path)} "
                             f"{'changed' if path in current else 'removed'}: stopping {pod}")
                    self.supervisor.remove(pod)
                del self.known[path]
        for path, digest in current.items():
            if path not in self.known:
                self.known[path] = (digest, self._start(path))

    def _start(self, path: str) -> str | None:
        try:
            record = lifecycle.create_pod(self.root, path, cgroup_root=self.cgroup_root,
                                          node_config=self.node_config)
        except (MinirunError, OSError) as e:
            log.error(f"kubelet: {os.path.basename(path)}: {e}")
            return None
        self.supervisor.add(record.name)
        log.info(f"kubelet: started pod {record.name} from {os.path.basename(path)} "
                 f"(IP {record.pod_ip})")
        return record.name
