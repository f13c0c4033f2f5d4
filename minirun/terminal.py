"""Terminals for containers: a pty made inside the container, its master sent out.

With ``process.terminal: true`` the init opens /dev/ptmx of the container's
own devpts instance (pty(7)), makes the slave its controlling terminal and
stdio, and sends the master file descriptor over the ``--console-socket``
as one SCM_RIGHTS message (unix(7)), as runc does. Whoever listens there
(containerd's shim, or ``minirun run`` itself) then owns the terminal.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import sys

from minirun import libc
from minirun.libc import lib


def connect_console_socket(path: str) -> socket.socket:
    """Connect to the listener before pivot_root hides the host's paths."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise libc.syscall_error("connect", path, e.errno) from None
    return sock


def setup_console(sock: socket.socket, size: tuple[int, int] | None) -> None:
    """In the init: make a pty, send its master away, become its session leader."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, lib.TIOCSPTLCK, struct.pack("i", 0))          # unlockpt(3)
    number = struct.unpack("I", fcntl.ioctl(master, lib.TIOCGPTN, b"\0" * 4))[0]
    slave_path = f"/dev/pts/{number}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    if size and all(size):
        import termios
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    socket.send_fds(sock, [slave_path.encode()], [master])
    os.close(master)
    sock.close()
    os.setsid()
    libc.ioctl_int(slave, lib.TIOCSCTTY, 0, slave_path)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def receive_console(sock: socket.socket) -> int:
    """The other end: take the pty master out of one SCM_RIGHTS message."""
    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("console socket: no file descriptor received")
    return fds[0]


def proxy(master: int, pidfd: int) -> None:
    """Copy our stdin to the pty and the pty to our stdout until the container exits."""
    import termios
    import tty

    stdin = sys.stdin.fileno()
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    watch = [master, pidfd] + ([stdin] if _readable(stdin) else [])
    try:
        while True:
            ready, _, _ = select.select(watch, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:   # EIO: every slave end is closed
                    data = b""
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    os.write(master, data)
                else:
                    watch.remove(stdin)
            if pidfd in ready and master not in ready:
                break
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _readable(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
