"""A veth pair: a virtual cable between the bridge and a container (veth(4)).

Whatever enters one end of a veth pair leaves the other. minirun plugs one
end into the bridge in the host namespace and puts the other end, named
``eth0``, into the container's network namespace. The lab's shell script::

    ip link add mr1a2b3c4d5e type veth peer name veth1
    ip link set mr1a2b3c4d5e master minirun0 up
    ip link set veth1 netns pod1                      # move
    ip -n pod1 link set veth1 name eth0               # rename
    ip -n pod1 addr add 192.168.200.2/24 dev eth0
    ip -n pod1 link set eth0 up
    ip -n pod1 link set lo up
    ip -n pod1 route add default via 192.168.200.1

minirun sends the first three lines as one RTM_NEWLINK: the peer's part of
the message (VETH_INFO_PEER) carries IFLA_NET_NS_FD and IFLA_IFNAME=eth0,
so the kernel creates the peer directly inside the container's namespace,
already called eth0 (``ip link add ... peer name eth0 netns pod1`` does the
same). Moving an existing interface to another namespace would cost an RCU
grace period, synchronize_net() in dev_change_net_namespace(), about 20 ms
here (``bench/network_bench.py`` measures it); creating it there costs none.
The rest is sent on a netlink socket opened inside the container's namespace.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Interface

from minirun.network import rtnl
from minirun.network.netns import NetnsFile

HOST_PREFIX = "mr"
LOOPBACK_IFINDEX = 1     # every network namespace's lo is made first, with index 1


def host_ifname(network: str, owner: str) -> str:
    """``mr`` + 10 hex digits of SHA-256(network, owner): 12 characters, under IFNAMSIZ.

    The same owner on the same network always gets the same name; the
    interface's alias (``ip link show`` prints it) names the owner in full.
    """
    digest = hashlib.sha256(f"{network}\0{owner}".encode()).hexdigest()
    return HOST_PREFIX + digest[:10]


def create_veth_pair(ipr, host_name: str, bridge_index: int, ns: NetnsFile,
                     ifname: str = "eth0", alias: str = "") -> None:
    """One RTM_NEWLINK: host end on the bridge and up, peer ``ifname`` inside ``ns``.

    IFLA_IFALIAS is not read when a link is created, so the alias is a second
    RTM_NEWLINK, addressed by name (with index 0 the kernel looks the name up).
    EEXIST means one of the two names is taken, on either side.
    """
    with rtnl.netlink_call("RTM_NEWLINK", f"{host_name}, veth peer {ifname} in {ns.path}"):
        ipr.link("add", ifname=host_name, kind="veth", master=bridge_index, state="up",
                 peer={"ifname": ifname, "net_ns_fd": ns.fd})
    if alias:
        try:
            with rtnl.netlink_call("RTM_NEWLINK", f"{host_name}, alias"):
                ipr.link("set", ifname=host_name, ifalias=alias)
        except BaseException:
            rtnl.delete_link(ipr, host_name)
            raise


def configure_inside(ns_ipr, ifname: str, address: IPv4Interface,
                     gateway: IPv4Address) -> None:
    """On a socket opened inside the container: address, eth0 and lo up, default route.

    The kernel adds the connected route (the subnet via eth0) by itself once
    eth0 is up with an address; only the default route is ours to add.
    """
    index = rtnl.link_index(ns_ipr, ifname)
    with rtnl.netlink_call("RTM_NEWADDR", f"{address} dev {ifname}"):
        ns_ipr.addr("add", index=index, address=str(address.ip),
                    prefixlen=address.network.prefixlen)
    rtnl.set_link_up(ns_ipr, index, ifname)
    rtnl.set_link_up(ns_ipr, LOOPBACK_IFINDEX, "lo")
    with rtnl.netlink_call("RTM_NEWROUTE", f"default via {gateway} dev {ifname}"):
        ns_ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=index)


def delete_veth(ipr, host_name: str) -> bool:
    """RTM_DELLINK on the host end; the kernel deletes the peer in the container too.

    False if it was already gone: when the container's namespace is
    destroyed (its last process exits), the kernel deletes eth0 and with it
    the whole pair.
    """
    return rtnl.delete_link(ipr, host_name)
