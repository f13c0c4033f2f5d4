"""Someone has to reap containers and restart them: the kubelet's pod workers, small.

One ``Supervisor`` serves any number of pods from one process. It starts
each pod's init containers one after the other, then its app containers;
it learns that a container exited from the container init's pidfd
(pidfd_open(2) turns readable on exit), reaps it with waitpid(2) (the
supervisor created it, so it is its child), records the exit code and
whether the cgroup's OOM killer struck, and restarts it as restartPolicy
says, after the kubelet's back-off: 10 s, doubling, at most 5 minutes,
forgotten after 10 minutes of running well.

The pod's sandbox (pause) is watched too: when it dies, the pod ends.
Everything it learns goes to the pod's ``pod.json`` for ``pod ls`` and
``pod inspect``.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass, field

from minirun import libc
from minirun.config.pod import Container, Pod, load_pod
from minirun.errors import MinirunError
from minirun.pod import lifecycle
from minirun.pod.store import ContainerStatus, PodDir, PodRecord
from minirun.state import now_rfc3339, process_state

BACKOFF_INITIAL = 10.0      # seconds, kubelet's initial container back-off
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0       # running this long without a crash forgets the back-off


def backoff_base() -> float:
    """MINIRUN_BACKOFF_SECONDS shortens the 10 s start of the back-off (for labs and tests)."""
    return float(os.environ.get("MINIRUN_BACKOFF_SECONDS", BACKOFF_INITIAL))


@dataclass
class ManagedPod:
    pod: Pod
    pd: PodDir
    record: PodRecord
    pidfds: dict[int, tuple[int, str]] = field(default_factory=dict)   # pidfd -> (pid, name)
    sandbox_fd: int = -1
    backoff: dict[str, float] = field(default_factory=dict)           # name -> next delay
    started: dict[str, float] = field(default_factory=dict)           # name -> monotonic
    done: bool = False


class Supervisor:
    def __init__(self, root: str, cgroup_root: str | None = None, follow_logs: bool = False):
        self.root = root
        self.cgroup_root = cgroup_root
        self.pods: dict[str, ManagedPod] = {}
        self.stopping = False
        self.follow_logs = follow_logs
        self._log_offsets: dict[str, int] = {}

    # --- which pods ------------------------------------------------------------------

    def add(self, name: str) -> None:
        """Take over a created pod: from now on this process starts and reaps its containers."""
        pd = PodDir(self.root, name)
        with pd:
            record = pd.load()
            record.supervisor_pid = os.getpid()
            pd.save(record)
        managed = ManagedPod(load_pod(record.manifest), pd, record)
        try:
            managed.sandbox_fd = libc.pidfd_open(record.sandbox_pid)
        except OSError:
            managed.sandbox_fd = -1     # already gone: the next step ends the pod
        self.pods[name] = managed

    def remove(self, name: str, grace: float | None = None) -> None:
        """Stop and remove one pod (its file left the manifest directory)."""
        managed = self.pods.pop(name, None)
        if managed is not None:
            # stop and reap our children before the sandbox goes: a PID namespace's
            # init (the pause, with shareProcessNamespace) cannot finish exiting
            # while a process of its namespace waits, unreaped, for its parent
            lifecycle.stop_containers(self.root, managed.record,
                                      managed.pod.termination_grace_period_seconds
                                      if grace is None else grace)
            self._reap_all(managed)
            self._close(managed)
            managed.record.supervisor_pid = 0
            self._save(managed)
        lifecycle.remove_pod(self.root, name, grace)

    def stop_all(self, remove: bool = False) -> None:
        for name in list(self.pods):
            managed = self.pods[name]
            if remove:
                self.remove(name)
                continue
            lifecycle.stop_containers(self.root, managed.record,
                                      managed.pod.termination_grace_period_seconds)
            self._reap_all(managed)
            managed.record.phase = _final_phase(managed.record)
            managed.record.supervisor_pid = 0
            self._save(managed)
            self._close(managed)
            del self.pods[name]

    # --- the loop ----------------------------------------------------------------------

    def run(self, until_done: bool = False, extra_work=None) -> None:
        """Step until SIGTERM/SIGINT (or, with ``until_done``, until every pod has ended)."""
        def stop(signum: int, _frame: object) -> None:
            self.stopping = True

        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self.stopping:
                if extra_work is not None:
                    extra_work()
                self.step()
                if until_done and all(m.done for m in self.pods.values()):
                    break
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def step(self, timeout: float = 0.5) -> None:
        """Start what is due, then wait (at most ``timeout``) for exits and handle them."""
        now = time.monotonic()
        for managed in list(self.pods.values()):
            if not managed.done:
                self._advance(managed, now)
        self._print_logs()
        watched = {fd: managed for managed in self.pods.values()
                   for fd in [*managed.pidfds, managed.sandbox_fd] if fd >= 0}
        wait = min([timeout, *self._deadlines(now)])
        ready, _, _ = select.select(list(watched), [], [], max(0.0, wait)) if watched else \
            ([], None, time.sleep(max(0.0, wait)))
        for fd in ready:
            managed = watched[fd]
            if fd == managed.sandbox_fd:
                self._sandbox_exited(managed)
            elif fd in managed.pidfds:
                self._container_exited(managed, fd)
        self._print_logs()

    def _deadlines(self, now: float) -> list[float]:
        return [s.next_start - now for m in self.pods.values() for s in m.record.containers
                if s.state == "waiting" and s.next_start > now]

    # --- one pod's progress ------------------------------------------------------------

    def _advance(self, managed: ManagedPod, now: float) -> None:
        record, pod = managed.record, managed.pod
        inits = [c for c in pod.init_containers]
        pending_init = next((c for c in inits if not _succeeded(record.status(c.name))), None)
        if pending_init is not None:
            status = record.status(pending_init.name)
            if status.state != "running" and status.next_start <= now:
                self._start(managed, pending_init, now)
            return
        for c in pod.containers:
            status = record.status(c.name)
            if status.state == "waiting" and status.next_start <= now:
                self._start(managed, c, now)
        phase = record.phase
        self._update_phase(managed)
        if record.phase != phase:
            self._save(managed)

    def _start(self, managed: ManagedPod, c: Container, now: float) -> None:
        status = managed.record.status(c.name)
        try:
            pid = lifecycle.start_container(self.root, managed.pd, managed.pod,
                                            managed.record, c, self.cgroup_root)
        except MinirunError as e:
            status.state, status.reason, status.exit_code = "waiting", "CreateContainerError", None
            status.message = str(e)
            self._schedule_restart(managed, c.name, now)
            self._save(managed)
            return
        managed.pidfds[libc.pidfd_open(pid)] = (pid, c.name)
        managed.started[c.name] = now
        if managed.record.start_time is None:
            managed.record.start_time = now_rfc3339()
        self._save(managed)

    def _container_exited(self, managed: ManagedPod, fd: int) -> None:
        pid, name = managed.pidfds.pop(fd)
        os.close(fd)
        code = _reap(pid)
        record, pod = managed.record, managed.pod
        lifecycle.container_exited(self.root, record, name, code)
        status = record.status(name)
        now = time.monotonic()
        if now - managed.started.get(name, now) > BACKOFF_RESET:
            managed.backoff.pop(name, None)
        c = pod.container(name)
        if _should_restart(pod.restart_policy, c, status):
            status.last_terminated = {"exitCode": status.exit_code, "reason": status.reason,
                                      "finishedAt": status.finished_at}
            self._schedule_restart(managed, name, now)
            status.restart_count += 1
        elif c.init and status.exit_code != 0:
            record.phase = "Failed"             # an init container failed for good
            managed.done = True
            lifecycle.stop_containers(self.root, record, pod.termination_grace_period_seconds)
        self._update_phase(managed)
        self._save(managed)

    def _schedule_restart(self, managed: ManagedPod, name: str, now: float) -> None:
        delay = managed.backoff.get(name, backoff_base())
        managed.backoff[name] = min(delay * 2, BACKOFF_MAX)
        status = managed.record.status(name)
        status.next_start = now + delay
        status.state = "waiting"
        if status.reason not in ("CreateContainerError",):
            status.reason = "CrashLoopBackOff"

    def _sandbox_exited(self, managed: ManagedPod) -> None:
        """Killing the pause process ends the pod: its namespaces are gone with it."""
        os.close(managed.sandbox_fd)
        managed.sandbox_fd = -1
        lifecycle.stop_containers(self.root, managed.record, 0)
        self._reap_all(managed)
        managed.record.phase = "Failed"
        managed.done = True
        self._save(managed)

    def _update_phase(self, managed: ManagedPod) -> None:
        record, pod = managed.record, managed.pod
        if record.phase == "Failed" and managed.done:
            return
        apps = [record.status(c.name) for c in pod.containers]
        if any(s.state == "running" for s in apps) or any(
                s.state == "waiting" and s.restart_count for s in apps):
            record.phase = "Running"
        elif all(s.state == "terminated" for s in apps):
            record.phase = _final_phase(record)
            managed.done = True

    # --- bookkeeping -------------------------------------------------------------------

    def _reap_all(self, managed: ManagedPod) -> None:
        for fd, (pid, name) in list(managed.pidfds.items()):
            os.close(fd)
            code = _reap(pid)
            status = managed.record.status(name)
            if status.state == "running" or status.exit_code is None:
                lifecycle.container_exited(self.root, managed.record, name, code)
        managed.pidfds.clear()

    def _close(self, managed: ManagedPod) -> None:
        for fd in managed.pidfds:
            os.close(fd)
        managed.pidfds.clear()
        if managed.sandbox_fd >= 0:
            os.close(managed.sandbox_fd)
            managed.sandbox_fd = -1

    def _save(self, managed: ManagedPod) -> None:
        if managed.pd.exists():
            with managed.pd:
                managed.pd.save(managed.record)

    def _print_logs(self) -> None:
        """``pod run``: stream every container's log file with a [container] prefix."""
        if not self.follow_logs:
            return
        for managed in self.pods.values():
            for status in managed.record.containers:
                path = managed.pd.log_path(status.name)
                offset = self._log_offsets.get(path, 0)
                try:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        data = fh.read()
                except FileNotFoundError:
                    continue
                complete = data[:data.rfind(b"\n") + 1]
                self._log_offsets[path] = offset + len(complete)
                for line in complete.decode(errors="replace").splitlines():
                    print(f"[{status.name}] {line}", flush=True)


def _reap(pid: int) -> int:
    """waitpid(2) our child; the code as a shell shows it (128+N for signal N)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 128 + 9 if process_state(pid) is None else 0
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _succeeded(status: ContainerStatus) -> bool:
    return status.state == "terminated" and status.exit_code == 0


def _should_restart(policy: str, c: Container, status: ContainerStatus) -> bool:
    """restartPolicy: Always restarts app containers whatever their exit code; OnFailure
    (and Always, for init containers) only after a failure; Never never."""
    if policy == "Never":
        return False
    if policy == "OnFailure" or c.init:
        return status.exit_code != 0
    return True


def _final_phase(record: PodRecord) -> str:
    apps = [s for s in record.containers if not s.init]
    return "Succeeded" if all(s.exit_code == 0 for s in apps) else "Failed"
