"""The Linux bridge: a virtual switch in the host's network namespace (ip-link(8)).

The lab's shell script does::

    ip link add minirun0 type bridge
    ip addr add 192.168.200.1/24 dev minirun0
    ip link set minirun0 up

Three rtnetlink messages, sent here by pyroute2:

1. RTM_NEWLINK with IFLA_IFNAME=minirun0 and IFLA_LINKINFO/IFLA_INFO_KIND=bridge:
   the kernel makes a bridge device (no ports yet);
2. RTM_NEWADDR with IFA_LOCAL=192.168.200.1, prefix length 24: the bridge gets
   the gateway address, and the kernel adds the connected route
   192.168.200.0/24 dev minirun0, so the host can reach every container;
3. RTM_NEWLINK with IFF_UP: the device starts passing frames.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from minirun.errors import ConfigError, MinirunError
from minirun.network import rtnl

IFNAMSIZ = 16   # include/uapi/linux/if.h: 15 characters and the NUL


def validate_ifname(name: str, where: str = "--bridge") -> str:
    """The kernel's dev_valid_name(): 1-15 characters, not . or .., no / : or whitespace."""
    if not name or len(name) >= IFNAMSIZ:
        raise ConfigError(where, f"interface name {name!r} is {len(name)} characters long: "
                          f"Linux allows 1 to {IFNAMSIZ - 1} (IFNAMSIZ)")
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise ConfigError(where, f"interface name {name!r} is not valid: no / or : or spaces")
    return name


def create_bridge(ipr, name: str, gateway: IPv4Address, subnet: IPv4Network) -> int:
    """Make the bridge, give it the gateway address, bring it up; return its index.

    On any error the half-made bridge is deleted before the error goes up.
    """
    with rtnl.netlink_call("RTM_NEWLINK", f"{name}, bridge"):
        ipr.link("add", ifname=name, kind="bridge")
    try:
        index = rtnl.link_index(ipr, name)
        with rtnl.netlink_call("RTM_NEWADDR", f"{gateway}/{subnet.prefixlen} dev {name}"):
            ipr.addr("add", index=index, address=str(gateway), prefixlen=subnet.prefixlen)
        rtnl.set_link_up(ipr, index, name)
    except BaseException:
        rtnl.delete_link(ipr, name)
        raise
    return index


def ensure_bridge(ipr, name: str, gateway: IPv4Address, subnet: IPv4Network) -> int:
    """The bridge's index, making it again if it is missing (after a reboot, say)."""
    link = rtnl.get_link(ipr, name)
    if link is None:
        return create_bridge(ipr, name, gateway, subnet)
    if rtnl.link_kind(link) != "bridge":
        raise MinirunError(f"interface {name} exists in this network namespace but is "
                           "not a bridge")
    return link["index"]


def delete_bridge(ipr, name: str) -> bool:
    """RTM_DELLINK: the address and connected route go with it. False if it was not there."""
    return rtnl.delete_link(ipr, name)
