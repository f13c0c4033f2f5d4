"""rtnetlink, the kernel's socket API for links, addresses and routes (rtnetlink(7)).

Everything ``ip link``, ``ip addr`` and ``ip route`` do is a message on a
``NETLINK_ROUTE`` socket: RTM_NEWLINK / RTM_DELLINK for interfaces,
RTM_NEWADDR for addresses, RTM_NEWROUTE for routes, and RTM_GET* to read
them back. pyroute2 builds those messages; this module adds what minirun
needs on top: a kernel error becomes ``RTM_NEWLINK(mr1a2b3c4d5e, veth): EEXIST
(File exists)``, the way every failed system call in minirun reads.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from minirun.libc import syscall_error

MAIN_TABLE = 254        # RT_TABLE_MAIN: the routes `ip route` shows


@contextmanager
def netlink_call(message: str, what: object) -> Iterator[None]:
    """Turn a NetlinkError from the body into the usual one-line OSError."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        yield
    except NetlinkError as e:
        raise syscall_error(message, what, e.code) from None


def get_link(ipr, ifname: str):
    """RTM_GETLINK by name: the kernel's description of interface ``ifname``, or None."""
    try:
        with netlink_call("RTM_GETLINK", ifname):
            return ipr.link("get", ifname=ifname)[0]
    except OSError as e:
        if e.errno == errno.ENODEV:
            return None
        raise


def link_index(ipr, ifname: str) -> int | None:
    """The index of interface ``ifname``, or None."""
    link = get_link(ipr, ifname)
    return None if link is None else link["index"]


def link_kind(link) -> str | None:
    """``bridge``, ``veth``, ... from IFLA_LINKINFO / IFLA_INFO_KIND of a link message."""
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def set_link_up(ipr, index: int, what: str) -> None:
    """RTM_NEWLINK with IFF_UP in the flags: ``ip link set X up``."""
    with netlink_call("RTM_NEWLINK", f"{what}, up"):
        ipr.link("set", index=index, state="up")


def delete_link(ipr, ifname: str) -> bool:
    """RTM_DELLINK by name (the kernel looks the name up); False if there was no such interface."""
    try:
        with netlink_call("RTM_DELLINK", ifname):
            ipr.link("del", ifname=ifname)
    except OSError as e:
        if e.errno == errno.ENODEV:     # gone already: a veth dies with its namespace
            return False
        raise
    return True


def ipv4_routes(ipr) -> list[tuple[str, str]]:
    """Every IPv4 route of the main table but the default: (``10.0.0.0/24``, device name)."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    routes = []
    for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
        if route["dst_len"] == 0:
            continue    # the default route "overlaps" everything and means nothing here
        dst = route.get_attr("RTA_DST")
        routes.append((f"{dst}/{route['dst_len']}", names.get(route.get_attr("RTA_OIF"), "?")))
    return routes
