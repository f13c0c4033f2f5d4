"""The container lifecycle, as runc's libcontainer orchestrates it from outside.

create -> (created) -> start -> (running) -> the program exits -> (stopped) -> delete

``create`` clones the init (init.py) with its new namespaces, answers its
questions over the channel, and returns once the init waits on the exec
FIFO; the minirun process then exits and the init is orphaned to whoever
started minirun, as with runc. ``start`` opens the FIFO, which lets the
init execve. Every function here is also the Python API the tests and the
benchmarks call; ``run.py`` (the foreground run) and ``exec.py`` build on it.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import time
from dataclasses import dataclass

from minirun import libc, namespaces
from minirun.channel import Channel
from minirun.config.oci import Config, load_bundle
from minirun.errors import MinirunError, NotFoundError, NotRunningError
from minirun.state import (
    Record,
    StateDir,
    is_alive,
    list_ids,
    now_rfc3339,
    oci_state,
    process_start_time,
)

DEFAULT_ROOT = "/run/minirun"
# config.json annotations asking minirun to wire a new network namespace (runc has no flag)
NETWORK_ANNOTATION = "org.minirun.network"      # a network name, like "default"
PORTS_ANNOTATION = "org.minirun.ports"          # "8080:80,5353:53/udp"


@dataclass
class Container:
    """A container on disk plus its live status, as ``minirun state`` reports it."""
    record: Record
    status: str
    state_dir: StateDir

    def oci_state(self) -> dict:
        """runtime-spec state, plus ``reason: OOMKilled`` when the kernel's OOM killer struck."""
        state = oci_state(self.record, self.status)
        if self.status == "stopped" and self.oom_killed():
            state["reason"] = "OOMKilled"
        return state

    def oom_killed(self) -> bool:
        """memory.events oom_kill (v2) or memory.oom_control oom_kill (v1) above zero."""
        cgroup = self.cgroup()
        return cgroup is not None and cgroup.oom_kill_count() > 0

    def config(self) -> Config:
        """The config.json the container was created from (a copy kept in the state dir)."""
        from minirun.config.oci import parse_config
        with open(self.state_dir.file("config.json")) as fh:
            return parse_config(json.load(fh), self.record.bundle)

    def run_hooks(self, phase: str, state: dict) -> None:
        """poststart / poststop: a failing hook is reported, not fatal (runtime-spec)."""
        with open(self.state_dir.file("config.json")) as fh:
            if not json.load(fh).get("hooks", {}).get(phase):
                return     # the common case: no need to parse and validate the config
        from minirun import log
        from minirun.hooks import run_hooks
        try:
            run_hooks(self.config().hooks[phase], phase, state)
        except MinirunError as e:
            log.warning(str(e))

    def cgroup(self):
        if self.record.cgroup is None:
            return None
        from minirun.cgroups import Cgroup
        return Cgroup.from_dict(self.record.cgroup)


def load(root: str, container_id: str) -> Container:
    """Read a container's record and work out its status from the kernel."""
    sd = StateDir.open(root, container_id)
    record = sd.load()
    return Container(record, _status(record, sd), sd)


def _status(record: Record, sd: StateDir) -> str:
    if not is_alive(record):
        return "stopped"
    if record.cgroup is not None:
        from minirun.cgroups import Cgroup
        if Cgroup.from_dict(record.cgroup).is_frozen():
            return "paused"
    return "created" if os.path.exists(sd.fifo) else "running"


def list_containers(root: str) -> list[Container]:
    found = []
    for cid in list_ids(root):
        try:
            found.append(load(root, cid))
        except NotFoundError:
            continue   # deleted while we looked
    return found


# --- create ------------------------------------------------------------------

def create(root: str, container_id: str, bundle: str, *, pid_file: str | None = None,
           console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
           cgroup_root: str | None = None, config: Config | None = None,
           stdio: tuple[int, int, int] | None = None) -> Container:
    """Set up a container whose init waits, before execve, for ``start``.

    ``config`` replaces reading BUNDLE/config.json; ``stdio`` gives the init
    other stdin, stdout and stderr than ours (a pod's log files).
    """
    cfg = config or load_bundle(bundle)
    if cfg.process.terminal and console_socket is None:
        raise MinirunError("process.terminal is true: use --console-socket (or run in the "
                           "foreground with `minirun run`)")
    sd = StateDir.make(root, container_id)
    cleanup = _Cleanup(sd)
    try:
        with open(sd.file("config.json"), "w") as fh:
            json.dump(cfg.raw, fh)
        make_exec_fifo(sd.fifo, cfg)
        cgroup = _make_cgroup(cfg, container_id, cgroup_root)
        cleanup.cgroup = cgroup
        record = Record(id=container_id, pid=0, pid_start=0, bundle=cfg.bundle,
                        rootfs=cfg.root_path, created=now_rfc3339(), owner=_owner(),
                        annotations=cfg.annotations, cgroup=cgroup.to_dict())
        # written now, so that `delete --force` can clean up if this process dies mid-create
        sd.save(record)
        _spawn_init(cfg, record, sd, cgroup, cleanup, console_socket, no_pivot, preserve_fds,
                    stdio)
        sd.save(record)
        if pid_file:
            write_pid_file(pid_file, record.pid)
    except BaseException:
        cleanup.run()
        raise
    return Container(record, "created", sd)


def make_exec_fifo(path: str, cfg: Config) -> None:
    """The FIFO the init blocks on (fifo(7)); owned by the container's root, who opens it."""
    os.mkfifo(path, 0o622)
    os.chmod(path, 0o622)   # mkfifo(3) applied our umask
    if cfg.uid_mappings:
        os.chown(path, _host_id(cfg.uid_mappings, 0), _host_id(cfg.gid_mappings, 0))


def _host_id(mappings: list, container_id: int) -> int:
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    return -1


def _make_cgroup(cfg: Config, container_id: str, cgroup_root: str | None):
    from minirun.cgroups import Cgroup
    cgroup = Cgroup.for_container(cfg.cgroups_path, container_id, cgroup_root)
    cgroup.create(cfg.resources)
    return cgroup


class _Cleanup:
    """What a failed create must undo, newest first: the init, the cgroup, the state dir."""

    def __init__(self, sd: StateDir) -> None:
        self.sd = sd
        self.pid = 0
        self.cgroup = None
        self.network: str | None = None

    def run(self) -> None:
        if self.network is not None:
            from minirun.network import detach
            detach(self.sd.root, self.network, owner=self.sd.id)
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if self.cgroup is not None:
            self.cgroup.kill_all(signal.SIGKILL)
            self.cgroup.destroy()
        self.sd.remove()


def _spawn_init(cfg: Config, record: Record, sd: StateDir, cgroup, cleanup: _Cleanup,
                console_socket: str | None, no_pivot: bool, preserve_fds: int,
                stdio: tuple[int, int, int] | None) -> None:
    """clone(2) the init and walk it through setup (see init.py for its side);
    the init's PID and namespaces go into ``record``."""
    from minirun.init import InitPlan, run_init

    parent_end, child_end = Channel.pair()
    joins = namespaces.open_namespaces(cfg.namespaces)
    pid_join = next((ns for ns in joins if ns.type == "pid"), None)
    plan = InitPlan(config=cfg, channel=child_end,
                    joins=[ns for ns in joins if ns.type != "pid"],
                    fifo_fd=os.open(sd.fifo, os.O_PATH | os.O_CLOEXEC),
                    no_pivot=no_pivot, preserve_fds=preserve_fds, stdio=stdio)
    try:
        if cfg.process.terminal:
            from minirun.terminal import connect_console_socket
            plan.console = connect_console_socket(console_socket)
        pid = namespaces.clone_into(namespaces.new_namespace_flags(cfg.namespaces), pid_join)
        if pid == 0:
            run_init(plan)   # never returns
        cleanup.pid = pid
    finally:
        child_end.close()
        os.close(plan.fifo_fd)
        namespaces.close_namespaces(joins)
        if plan.console is not None:
            plan.console.close()
    record.pid, record.pid_start = pid, process_start_time(pid) or 0
    record.namespaces = {ns.type: ns.path or namespaces.namespace_path(pid, ns.type)
                         for ns in cfg.namespaces}
    try:
        if cfg.namespace("user") is not None and cfg.namespace("user").path is None:
            namespaces.write_id_mappings(pid, cfg.uid_mappings, cfg.gid_mappings)
        # The init may go on mounting while we move it into its cgroups: the first
        # cgroup.procs write of a while waits for an RCU grace period (~10 ms).
        # Both are done before the hooks run, long before the program starts.
        parent_end.send("mapped")
        if cgroup is not None:
            cgroup.add_process(pid)
        if NETWORK_ANNOTATION in cfg.annotations:
            record.network = _attach_network(sd, cfg, pid)
            cleanup.network = record.network
            sd.save(record)   # a crash from here on leaves a network for delete to undo
        parent_end.expect("mounted")
        state = oci_state(record, "creating")
        if cfg.hooks.get("prestart") or cfg.hooks.get("createRuntime"):
            from minirun.hooks import run_hooks
            run_hooks(cfg.hooks.get("prestart", []), "prestart", state)
            run_hooks(cfg.hooks.get("createRuntime", []), "createRuntime", state)
        parent_end.send("hooks-done", state=state)
        parent_end.expect("ready")
    finally:
        parent_end.close()


def _attach_network(sd: StateDir, cfg: Config, pid: int) -> str:
    """Wire the init's new network namespace to a minirun network (docs/network.md)."""
    from minirun.network import PortForward, attach

    name = cfg.annotations[NETWORK_ANNOTATION]
    ns = cfg.namespace("network")
    if ns is None or ns.path is not None:
        raise MinirunError(f"annotations.{NETWORK_ANNOTATION}: needs a new network namespace "
                           "in linux.namespaces")
    ports = [PortForward.parse(p.strip()) for p in
             cfg.annotations.get(PORTS_ANNOTATION, "").split(",") if p.strip()]
    attach(sd.root, name, f"/proc/{pid}/ns/net", owner=sd.id, ports=ports)
    return name


def _owner() -> str:
    return "" if os.getuid() == 0 else str(os.getuid())


def write_pid_file(path: str, pid: int) -> None:
    """The pid file holds only the digits, no newline, written atomically (as runc does)."""
    from minirun.state import write_atomic
    write_atomic(os.path.abspath(path), str(pid))


# --- start, kill, delete -----------------------------------------------------------

def start(root: str, container_id: str) -> Container:
    """Open the exec FIFO for reading: the init's blocked open(2) returns and it execs."""
    c = load(root, container_id)
    with c.state_dir:
        c.status = _status(c.record, c.state_dir)
        if c.status != "created":
            if c.status == "stopped":
                raise MinirunError(f"container {container_id!r}: cannot start a container that "
                                   "has stopped")
            raise MinirunError(f"container {container_id!r}: cannot start an already "
                               f"{c.status} container")
        fd = os.open(c.state_dir.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            data = _read_fifo(fd, c.record)
        finally:
            os.close(fd)
        os.unlink(c.state_dir.fifo)
        if data != b"0":
            raise MinirunError(f"container {container_id!r}: init exited before it could start")
        c.status = "running"
    c.run_hooks("poststart", c.oci_state())
    return c


def _read_fifo(fd: int, record: Record) -> bytes:
    """Wait until the init writes its byte, noticing if it died instead."""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            return os.read(fd, 1)
        if not is_alive(record):
            return b""


def kill(root: str, container_id: str, sig: int, all_processes: bool = False) -> None:
    """Send a signal to the init (or, with --all, to every process in the cgroup)."""
    c = load(root, container_id)
    if c.status == "stopped":
        raise NotRunningError(container_id)
    cgroup = c.cgroup()
    if all_processes and cgroup is not None:
        cgroup.kill_all(sig)
        return
    signal_init(c.record, sig)


def signal_init(record: Record, sig: int) -> None:
    """Signal through a pidfd, after checking the PID still names our init."""
    try:
        pidfd = libc.pidfd_open(record.pid)
    except OSError:
        raise NotRunningError(record.id) from None
    try:
        if not is_alive(record):
            raise NotRunningError(record.id)
        try:
            libc.pidfd_send_signal(pidfd, sig, record.pid)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
            raise NotRunningError(record.id) from None   # it died after the check
    finally:
        os.close(pidfd)


def delete(root: str, container_id: str, force: bool = False) -> None:
    """Remove a stopped (or created) container; ``force`` kills a running one first."""
    try:
        c = load(root, container_id)
    except NotFoundError:
        if force:
            return   # as runc: deleting what is gone is not an error with --force
        raise
    except MinirunError:
        if not force:
            raise
        StateDir(root, container_id).remove()   # unreadable state: force removes it
        return
    if c.status in ("running", "paused") and not force:
        raise MinirunError(f"container {container_id!r}: cannot delete a container that is "
                           f"not stopped: {c.status}")
    cgroup = c.cgroup()
    if c.status != "stopped":
        if cgroup is not None:
            if c.status == "paused":
                cgroup.thaw()
            cgroup.kill_all(signal.SIGKILL)
        try:
            signal_init(c.record, signal.SIGKILL)
        except NotRunningError:
            pass
        wait_for_exit(c.record)
    try:
        c.run_hooks("poststop", oci_state(c.record, "stopped"))
    except (OSError, ValueError):
        pass   # a state dir without its config (a crash mid-create): nothing to run
    if c.record.network is not None:
        from minirun import log
        from minirun.network import detach
        try:
            detach(root, c.record.network, owner=container_id)
        except MinirunError as e:   # the network was removed by hand: nothing to undo
            log.warning(str(e))
    if cgroup is not None:
        cgroup.kill_all(signal.SIGKILL)   # stragglers that outlived the init
        cgroup.destroy()
    c.state_dir.remove()


def wait_for_exit(record: Record, timeout: float = 10.0) -> None:
    """Wait for a process that need not be our child: its pidfd turns readable on exit."""
    try:
        pidfd = libc.pidfd_open(record.pid)
    except OSError:
        return
    try:
        deadline = time.monotonic() + timeout
        while is_alive(record) and time.monotonic() < deadline:
            select.select([pidfd], [], [], 0.05)
    finally:
        os.close(pidfd)


# --- update --------------------------------------------------------------------------------

def update(root: str, container_id: str, changes: dict, where: str = "update") -> None:
    """Apply linux.resources changes to a container's cgroups, and keep them in its stored
    config.json (as runc does), so that what `state` and a later `update` see is true."""
    from minirun.config.resources import parse_resources
    from minirun.state import write_atomic

    resources = parse_resources(changes, where)
    c = load(root, container_id)
    cgroup = c.cgroup()
    if c.status not in ("created", "running", "paused") or cgroup is None:
        raise MinirunError(f"container {container_id!r} is {c.status}: cannot update it")
    with c.state_dir:
        cgroup.update(resources, where)
        path = c.state_dir.file("config.json")
        with open(path) as fh:
            config = json.load(fh)
        stored = config.setdefault("linux", {}).setdefault("resources", {})
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(stored.get(key), dict):
                stored[key].update(value)
            else:
                stored[key] = value
        write_atomic(path, json.dumps(config))


# --- ps ----------------------------------------------------------------------------------

def processes(root: str, container_id: str) -> list[int]:
    """Every host PID in the container's cgroup (or just the init without one)."""
    c = load(root, container_id)
    cgroup = c.cgroup()
    if cgroup is not None:
        return sorted(cgroup.pids())
    return [c.record.pid] if c.status != "stopped" else []
