"""``minirun exec``: one more process in a running container's namespaces and cgroup.

The same dance as create, shorter: the parent joins the container's PID
namespace for its next child (namespaces.clone_into), the child joins the
others, the parent puts it in the container's cgroup, and the child runs
init.finish_and_exec with the container's own limits and privileges.
"""

from __future__ import annotations

import os
import signal

from minirun import namespaces
from minirun.channel import Channel
from minirun.config.oci import Process
from minirun.container import load, write_pid_file
from minirun.errors import MinirunError


def exec_in(root: str, container_id: str, process: Process, *, detach: bool = False,
            pid_file: str | None = None, console_socket: str | None = None,
            preserve_fds: int = 0) -> int:
    """Run one more process in a running container's namespaces and cgroup."""
    from minirun.init import exec_process

    c = load(root, container_id)
    if c.status != "running":
        raise MinirunError(f"container {container_id!r}: cannot exec in a {c.status} "
                           "container" if c.status != "stopped" else
                           f"container {container_id!r}: container not running")
    cfg = c.config()
    for ns in cfg.namespaces:   # join what the init has, whether it made or joined it
        ns.path = namespaces.namespace_path(c.record.pid, ns.type)
    joins = namespaces.open_namespaces(cfg.namespaces)
    pid_join = next((ns for ns in joins if ns.type == "pid"), None)
    parent_end, child_end = Channel.pair()
    console = None
    if process.terminal:
        from minirun.terminal import connect_console_socket
        if console_socket is None:
            raise MinirunError("exec -t needs --console-socket")
        console = connect_console_socket(console_socket)
    try:
        pid = namespaces.clone_into(0, pid_join)
        if pid == 0:
            exec_process(process, cfg, [ns for ns in joins if ns.type != "pid"], child_end,
                         console, preserve_fds)
    finally:
        child_end.close()
        namespaces.close_namespaces(joins)
        if console is not None:
            console.close()
    try:
        cgroup = c.cgroup()
        if cgroup is not None:
            cgroup.add_process(pid)
        parent_end.send("mapped")
        parent_end.expect("ready")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        parent_end.close()
    if pid_file:
        write_pid_file(pid_file, pid)
    if detach:
        return 0
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
