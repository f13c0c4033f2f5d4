"""Network namespaces as files, and netlink sockets inside them (network_namespaces(7)).

A network namespace is named by a file: ``/proc/PID/ns/net`` of any process
in it, or a bind mount of that file such as ``/run/netns/NAME`` (what
``ip netns add`` makes). Opening the file gives a descriptor that keeps the
namespace alive and that two kernel interfaces accept:

- setns(2): the calling *thread* moves into the namespace;
- ``IFLA_NET_NS_FD`` in an RTM_NEWLINK message: the kernel creates or moves
  an interface into that namespace.

A socket belongs to the namespace it was created in, for its whole life. So
to configure addresses and routes inside a container, minirun steps into the
namespace, opens a netlink socket, and steps straight back: the socket keeps
talking to the container's namespace while minirun itself stays outside.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from minirun import libc
from minirun.errors import MinirunError

# The calling thread's own namespace: setns(2) works per thread, so
# /proc/thread-self (not /proc/self, the thread group leader) is the honest name.
OWN_NETNS = "/proc/thread-self/ns/net"


@dataclass
class NetnsFile:
    """An open network namespace file."""
    path: str
    fd: int
    inode: int          # the namespace's identity: two paths name one namespace iff equal

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> NetnsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def netns_path(target: str | int) -> str:
    """A PID (``1234`` or ``"1234"``) becomes ``/proc/1234/ns/net``; a path stays as it is."""
    if isinstance(target, int) or target.isdigit():
        return f"/proc/{int(target)}/ns/net"
    return target


def open_netns(target: str | int) -> NetnsFile:
    """open(2) a namespace file; an error names the path and what is wrong with it."""
    path = netns_path(target)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise MinirunError(f"network namespace {path}: {e.strerror}") from None
    return NetnsFile(path, fd, os.fstat(fd).st_ino)


def own_netns_inode() -> int:
    """The inode of the namespace this thread is in."""
    return os.stat(OWN_NETNS).st_ino


def netns_inode(path: str) -> int | None:
    """The inode behind a namespace file, or None if it no longer exists."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


@contextmanager
def entered(ns: NetnsFile) -> Iterator[None]:
    """Run the body of the ``with`` inside ``ns``, then come back (setns(2) twice).

    setns(2) checks the file really is a network namespace (EINVAL if not).
    """
    own = os.open(OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            libc.setns(ns.fd, libc.lib.CLONE_NEWNET, f"{ns.path}, net")
        except OSError as e:
            if e.errno == errno.EINVAL:     # the file is some other kind of namespace
                raise MinirunError(f"{ns.path} is not a network namespace file") from None
            raise
        try:
            yield
        finally:
            libc.setns(own, libc.lib.CLONE_NEWNET, f"{OWN_NETNS} (back home), net")
    finally:
        os.close(own)


def rtnl_socket(ns: NetnsFile | None = None):
    """A pyroute2 ``IPRoute``: an rtnetlink socket in ``ns``, or in our own namespace.

    pyroute2 0.9 can also do this itself (``IPRoute(netns=...)``), but it does
    so by forking a helper process, which costs tens of milliseconds; a
    setns(2) there and back costs microseconds.
    """
    from pyroute2 import IPRoute

    if ns is None:
        return IPRoute()
    with entered(ns):
        return IPRoute()


# --- named namespaces: /run/netns/NAME, as `ip netns add` makes them ------------

NETNS_DIR = "/run/netns"


def named_netns_path(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or len(name) > 64:
        raise MinirunError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_DIR, name)


def add_named_netns(name: str) -> str:
    """A new, empty network namespace kept alive by a bind mount of its file.

    unshare(2) moves this process into a new namespace; bind-mounting
    /proc/thread-self/ns/net onto /run/netns/NAME keeps the namespace alive
    after we step back (setns(2)) and exit, as ``ip netns add`` does.
    """
    path = named_netns_path(name)
    os.makedirs(NETNS_DIR, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o444))
    except FileExistsError:
        raise MinirunError(f"network namespace {name!r} already exists ({path})") from None
    own = os.open(OWN_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.unshare(libc.lib.CLONE_NEWNET)
        try:
            libc.mount(OWN_NETNS, path, None, libc.lib.MS_BIND)
        finally:
            libc.setns(own, libc.lib.CLONE_NEWNET, f"{OWN_NETNS} (back home), net")
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(own)
    with open_netns(path) as ns, entered(ns):
        _bring_up_loopback()
    return path


def _bring_up_loopback() -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def remove_named_netns(name: str) -> None:
    """umount2(2) the bind mount and remove the file; the namespace goes with its last user."""
    path = named_netns_path(name)
    if not os.path.exists(path):
        raise MinirunError(f"network namespace {name!r} does not exist")
    try:
        libc.umount2(path, libc.lib.MNT_DETACH)
    except OSError as e:
        if e.errno != errno.EINVAL:   # EINVAL: not a mount point (a half-made one)
            raise
    os.unlink(path)


def list_named_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []
