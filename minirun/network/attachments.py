"""Attachments: what ``minirun network attach / detach`` and ``-p`` do, step by step.

An attachment wires one network namespace to a network: an address from IPAM,
a veth pair between the bridge and the namespace's ``eth0``, a default route,
and port forwards if asked. Like ``networks.py``: all checks first, then each
kernel object with its undo step, then the lease file, all under the lock.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from contextlib import ExitStack
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from minirun.errors import ConfigError, MinirunError
from minirun.network import ipam, store
from minirun.network.networks import (
    DEFAULT_NETWORK,
    OWNER_MAX_LENGTH,
    Attachment,
    Network,
    PortForward,
    all_networks,
    drop_nat_rules,
    ensure_default_locked,
    load_network,
    remove_locked,
    save_leases,
    undo_quietly,
)

if TYPE_CHECKING:
    from minirun.network.netns import NetnsFile


def _validate_owner(owner: str) -> str:
    if not owner or len(owner) > OWNER_MAX_LENGTH or not owner.isprintable() \
            or any(c.isspace() for c in owner):
        raise ConfigError("--id", f"{owner!r} is not a valid owner: 1 to {OWNER_MAX_LENGTH} "
                          "printable characters, no spaces")
    return owner


def attach(root: str, name: str, netns: str | int, owner: str | None = None,
           ports: Iterable[PortForward] = (), ifname: str = "eth0") -> Attachment:
    """Wire the network namespace ``netns`` (a path or a PID) to network ``name``.

    The default network is made if it does not exist yet. ``owner`` (a
    container or pod ID) names the attachment for ``detach``; without one the
    namespace path is used.
    """
    from minirun.network import netns as ns_files
    from minirun.network.bridge import validate_ifname

    ports = [p.validate() for p in ports]
    validate_ifname(ifname, "ifname")
    ns = ns_files.open_netns(netns)
    try:
        owner = _validate_owner(owner or ns.path)
        if ns.inode == ns_files.own_netns_inode():
            raise MinirunError(f"{ns.path} is minirun's own network namespace: give the "
                               "namespace of a container")
        with ns_files.entered(ns):
            pass    # setns(2) there and back: fails now if it is not a network namespace
        with store.locked(root), ExitStack() as undo:
            if name == DEFAULT_NETWORK and name not in store.network_names(root):
                ensure_default_locked(root)
                # made for this attach: if the attach fails, it goes again
                undo.callback(undo_quietly, "remove the default network", remove_locked, root, name)
            network = load_network(root, name)
            attachment = _attach(root, network, ns, owner, ports, ifname)
            undo.pop_all()
            return attachment
    finally:
        ns.close()


def _attach(root: str, network: Network, ns: NetnsFile, owner: str,
            ports: list[PortForward], ifname: str) -> Attachment:
    from minirun.network import bridge, netns, veth

    for other in network.attachments:
        if other.owner == owner:
            raise MinirunError(f"{owner!r} is already attached to network {network.name!r} "
                               f"as {other.ip}")
        if other.netns_inode == ns.inode and netns.netns_inode(other.netns) == ns.inode:
            raise MinirunError(f"{ns.path} is already attached to network {network.name!r} "
                               f"as {other.ip} (owner {other.owner!r})")
    subnet, gateway = IPv4Network(network.subnet), IPv4Address(network.gateway)
    address = ipam.next_free_address(network.name, subnet, gateway,
                                     {a.ip for a in network.attachments})
    _check_ports(root, network, ports)
    host_name = veth.host_ifname(network.name, owner)

    ipr = netns.rtnl_socket()
    ns_ipr = None
    try:
        bridge_index = bridge.ensure_bridge(ipr, network.bridge, gateway, subnet)
        ns_ipr = netns.rtnl_socket(ns)
        with ExitStack() as undo:
            try:
                veth.create_veth_pair(ipr, host_name, bridge_index, ns, ifname,
                                      alias=f"minirun {network.name} {owner}")
            except OSError as e:
                if e.errno == errno.EEXIST:
                    _explain_name_clash(ipr, ns_ipr, ns, host_name, ifname, owner,
                                        network.name)
                raise
            undo.callback(undo_quietly, f"delete {host_name}", veth.delete_veth, ipr, host_name)
            veth.configure_inside(ns_ipr, ifname, address, gateway)
            attachment = Attachment(network.name, owner, str(address.ip), subnet.prefixlen,
                                    str(gateway), host_name, ifname, ns.path, ns.inode)
            _forward_ports(network, attachment, ports, undo)
            network.attachments.append(attachment)
            save_leases(root, network)
            undo.pop_all()
    finally:
        ipr.close()
        if ns_ipr is not None:
            ns_ipr.close()
    return attachment


def _explain_name_clash(ipr, ns_ipr, ns: NetnsFile, host_name: str, ifname: str, owner: str,
                        network: str) -> None:
    """After EEXIST from RTM_NEWLINK: say which of the two names was taken."""
    from minirun.network import rtnl

    if rtnl.link_index(ns_ipr, ifname) is not None:
        raise MinirunError(f"{ns.path} already has an interface named {ifname}")
    if rtnl.link_index(ipr, host_name) is not None:
        raise MinirunError(f"interface {host_name} (for {owner!r} on {network!r}) already "
                           f"exists: left over? `ip link del {host_name}`")


def _check_ports(root: str, network: Network, ports: list[PortForward]) -> None:
    """Every requested host port: NAT on, not forwarded already, no socket on it."""
    from minirun.network import nat

    if not ports:
        return
    if not network.nat:
        raise ConfigError(f"-p {ports[0]}", f"network {network.name!r} has no NAT: port "
                          "forwarding needs a network made with --nat")
    taken = {(p.protocol, p.host_port): (n.name, a.owner)
             for n in all_networks(root) for a in n.attachments for p in a.ports}
    for port in ports:
        key = (port.protocol, port.host_port)
        if key in taken:
            net, owner = taken[key]
            raise ConfigError(f"-p {port}", f"host port {port.host_port}/{port.protocol} is "
                              f"already forwarded to {owner!r} on network {net!r}")
        if nat.host_port_in_use(port.protocol, port.host_port):
            raise ConfigError(f"-p {port}", f"host port {port.host_port}/{port.protocol} is "
                              "already in use by a socket in this network namespace")
        taken[key] = (network.name, "this request")


def _forward_ports(network: Network, attachment: Attachment, ports: list[PortForward],
                   undo: ExitStack) -> None:
    from minirun.network import nat

    if not ports:
        return
    nft = nat.open_nftables()
    try:
        for port in ports:
            undo.callback(undo_quietly, f"remove port forward {port}", drop_nat_rules,
                          f"net={network.name}", f"owner={attachment.owner}",
                          f"{port.protocol}/{port.host_port}")
            nat.add_port_forward(nft, network.name, attachment.owner, port.protocol,
                                 port.host_port, IPv4Address(attachment.ip),
                                 port.container_port)
            attachment.ports.append(port)
    finally:
        nft.close()


def _find_attachment(network: Network, owner: str | None, netns: str | int | None) -> Attachment:
    from minirun.network import netns as ns_files

    if owner is not None:
        for attachment in network.attachments:
            if attachment.owner == owner:
                return attachment
        raise MinirunError(f"{owner!r} is not attached to network {network.name!r}")
    if netns is None:
        raise ConfigError("detach", "give the owner (--id) or the namespace (--netns)")
    path = ns_files.netns_path(netns)
    inode = ns_files.netns_inode(path)
    for attachment in network.attachments:
        if attachment.netns == path or (inode is not None and attachment.netns_inode == inode):
            return attachment
    raise MinirunError(f"{path} is not attached to network {network.name!r}")


def detach(root: str, name: str, owner: str | None = None,
           netns: str | int | None = None) -> Attachment:
    """Undo ``attach``: port forwards, the veth pair (both ends), the lease."""
    from minirun.network import netns as ns_files
    from minirun.network import veth

    with store.locked(root):
        network = load_network(root, name)
        attachment = _find_attachment(network, owner, netns)
        if attachment.ports:
            drop_nat_rules(f"net={name}", f"owner={attachment.owner}")
        ipr = ns_files.rtnl_socket()
        try:
            veth.delete_veth(ipr, attachment.host_ifname)
        finally:
            ipr.close()
        network.attachments.remove(attachment)
        save_leases(root, network)
        return attachment


def add_port_forward(root: str, name: str, owner: str, port: PortForward) -> Attachment:
    """Forward a host port to an attached container after the fact (``-p`` later)."""
    port.validate()
    with store.locked(root):
        network = load_network(root, name)
        attachment = _find_attachment(network, owner, None)
        _check_ports(root, network, [port])
        with ExitStack() as undo:
            _forward_ports(network, attachment, [port], undo)
            save_leases(root, network)
            undo.pop_all()
        return attachment


def remove_port_forward(root: str, name: str, owner: str, host_port: int,
                        protocol: str = "tcp") -> Attachment:
    with store.locked(root):
        network = load_network(root, name)
        attachment = _find_attachment(network, owner, None)
        kept = [p for p in attachment.ports
                if (p.host_port, p.protocol) != (host_port, protocol)]
        if len(kept) == len(attachment.ports):
            raise MinirunError(f"{owner!r} has no port forward from {host_port}/{protocol}")
        drop_nat_rules(f"net={name}", f"owner={owner}", f"{protocol}/{host_port}")
        attachment.ports = kept
        save_leases(root, network)
        return attachment
