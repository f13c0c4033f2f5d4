"""``minirun run`` in the foreground: create, start, wait, delete, as ``runc run`` does.

minirun is the init's parent here, so it can waitpid(2) for it and return its
exit code (128+N for signal N); meanwhile the signals a user sends minirun
(Ctrl-C, SIGTERM, window size changes) are passed on to the init. With
``process.terminal`` and no console socket of the caller's, minirun listens
on a console socket of its own and proxies the pty to its own stdio.
"""

from __future__ import annotations

import os
import signal

from minirun import libc
from minirun.config.oci import load_bundle
from minirun.container import Container, create, delete, start


def run(root: str, container_id: str, bundle: str, *, detach: bool = False,
        pid_file: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
        cgroup_root: str | None = None, console_socket: str | None = None) -> int:
    """``minirun run``: in the foreground, return the exit code (128+N for signal N)."""
    cfg = load_bundle(bundle)
    own_console = None
    if not detach and console_socket is None and cfg.process.terminal:
        own_console = _ConsoleListener()
        console_socket = own_console.path
    try:
        c = create(root, container_id, bundle, pid_file=pid_file, no_pivot=no_pivot,
                   preserve_fds=preserve_fds, cgroup_root=cgroup_root,
                   console_socket=console_socket, config=cfg)
        master = own_console.accept() if own_console else None
    finally:
        if own_console:
            own_console.close()
    try:
        start(root, container_id)
    except BaseException:
        delete(root, container_id, force=True)
        raise
    if detach:
        return 0
    return wait_and_delete(root, c, master)


class _ConsoleListener:
    """A console socket of our own, for ``run`` with a terminal in the foreground."""

    def __init__(self) -> None:
        import socket
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="minirun-console-")
        self.path = os.path.join(self.dir, "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def accept(self) -> int:
        from minirun.terminal import receive_console
        conn, _ = self.sock.accept()
        with conn:
            return receive_console(conn)

    def close(self) -> None:
        import shutil
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def wait_and_delete(root: str, c: Container, master: int | None = None) -> int:
    """Forward signals to the init, wait for it (we are its parent), then delete it."""
    pid = c.record.pid

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED_SIGNALS}
    try:
        if master is not None:
            from minirun.terminal import proxy
            pidfd = libc.pidfd_open(pid)
            try:
                proxy(master, pidfd)
            finally:
                os.close(pidfd)
                os.close(master)
        _, status = os.waitpid(pid, 0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    if c.oom_killed():
        from minirun import log
        log.error(f"container {c.record.id!r} was OOM-killed (memory limit reached)")
        code = 137
    delete(root, c.record.id, force=True)
    return code
